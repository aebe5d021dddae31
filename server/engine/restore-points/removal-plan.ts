/**
 * What `removeRestorePoint` would do to a restore point, worked out before anything is done (`RestorePoint.removal`).
 *
 * A backup on a remote is judged from its VM folder as it is now (the remote is the truth; the rows only index it): one
 * read-only scan per VM folder, then the same decisions retention takes (repository/unreferenced-files.ts) replayed on a
 * copy of the folder's VHD lineage, deleting and merging nothing: the removed backup's files no kept backup's chain goes
 * through are deleted; a VHD that kept backups build on is merged with its only child (the next backup), which then holds
 * both; with several children, or on a remote where merges do not run, it stays. A snapshot or replica is judged from its
 * pool as Cairn sees it now. Nothing here takes a lock: the plan is an estimate of a folder that may change before the
 * removal runs (which decides again, under the lock, and never loses a backup a kept one needs).
 */
import type { Db } from "../../db/prisma.js";
import { messageOf } from "../../errors.js";
import { blockChecksumsPathOf, folderOf, resolveInVmDir } from "../../repository/layout.js";
import { isProtectedAt, readableTime } from "../../repository/immutability.js";
import { filesOfMetadata, immutableUntilOf } from "../../repository/metadata.js";
import { type MetadataEntry, type VmFolderScan, scanVmFolder } from "../../repository/scanner.js";
import { mergeWayOf } from "../../repository/unreferenced-files.js";
import { type VhdIdentity, VhdFolder } from "../../repository/vhd-lineage.js";
import type { Remote } from "../../remotes/remote.js";
import type { PoolRegistry } from "../../xapi/pool-registry.js";
import type { StoredRemotes } from "../stored-remotes.js";

/** What the removal of one restore point amounts to. */
export type RemovalAction =
  /** Its files go: no kept backup needs them. */
  | "DELETE_FILES"
  /** Newer backups build on it: the next backup is merged with it so that they still restore. */
  | "MERGE_INTO_NEXT"
  /** Its metadata goes, its VHDs stay (several backups branch from them, or merges do not run on the remote). */
  | "FILES_KEPT"
  /** The snapshot or replica is destroyed with its disks on its pool. */
  | "DESTROY_ON_POOL"
  /** Nothing is left behind it (its backup or VM is already gone): only the restore point is unlisted. */
  | "UNLIST_ONLY"
  /** Cannot tell now (the remote or pool cannot be read): see the description. */
  | "UNKNOWN";

/** One merge the removal would run, in one disk folder. */
export interface PlannedMerge {
  /** The disk's name in the backup (its VDI uuid when it has none). */
  disk: string;
  /** The removed backup's VHD (remote path). */
  parentPath: string;
  /** The next backup's VHD, which ends up holding both (remote path). */
  childPath: string;
  /** Bytes the merge reads and writes, about: the child's file size (its blocks are copied into the parent). */
  estimatedBytes: number;
}

export interface RemovalPlan {
  action: RemovalAction;
  /** One or two sentences for people, saying what happens (or why it cannot be told). */
  description: string;
  /** Why removeRestorePoint would be refused now (a running replica, a pool not connected, unreadable files), or null. */
  refusal: string | null;
  /** Remote paths that disappear (remote backups): the metadata, the files deleted, the VHDs merged into the next backup's. */
  deletedFiles: string[];
  /** Bytes freed, about (the deleted files' sizes); null when merges make it unknown or nothing can be told. */
  freedBytes: number | null;
  merges: PlannedMerge[];
  /** The backup merged with it: its metadata path and time (null unless MERGE_INTO_NEXT). */
  nextBackup: { path: string; timestamp: Date } | null;
  /** How many kept backups' chains go through it (they still restore afterwards). */
  dependents: number;
  /** The pool of a snapshot or replica, by name. */
  poolName: string | null;
}

export interface RemovalPointRow {
  id: string;
  kind: string;
  vmUuid: string;
  vmName: string;
  timestamp: Date;
  remoteId: string | null;
  path: string | null;
  poolId: string | null;
  objectUuid: string | null;
}

export interface RemovalPlanDeps {
  db: Db;
  registry: PoolRegistry;
  remotes: StoredRemotes;
}

/** How long one remote may take to be opened and have a VM folder read before the plan says it cannot tell. */
export const REMOVAL_PLAN_TIMEOUT_MS = 20_000;

/**
 * The removal plan of each point, by id. Remote points are grouped so that each remote is opened once and each VM folder
 * scanned once, however many of its points are asked about.
 */
export async function planRemovals(
  deps: RemovalPlanDeps,
  points: readonly RemovalPointRow[],
  options: { timeoutMs?: number } = {},
): Promise<Map<string, RemovalPlan>> {
  const plans = new Map<string, RemovalPlan>();
  const byRemote = new Map<string, RemovalPointRow[]>();
  for (const point of points) {
    if ((point.kind === "XVA" || point.kind === "VHD_CHAIN") && point.remoteId && point.path) {
      byRemote.set(point.remoteId, [...(byRemote.get(point.remoteId) ?? []), point]);
    } else if (point.kind === "SNAPSHOT" || point.kind === "REPLICA") {
      plans.set(point.id, await planPoolRemoval(deps, point));
    } else {
      plans.set(
        point.id,
        unknown(`Restore point ${point.id} is a ${point.kind} with no place Cairn knows: it cannot tell what removing it does.`),
      );
    }
  }
  await Promise.all(
    [...byRemote].map(async ([remoteId, remotePoints]) => {
      for (const [id, plan] of await planRemoteRemovals(deps, remoteId, remotePoints, options.timeoutMs ?? REMOVAL_PLAN_TIMEOUT_MS)) {
        plans.set(id, plan);
      }
    }),
  );
  return plans;
}

async function planRemoteRemovals(
  deps: RemovalPlanDeps,
  remoteId: string,
  points: RemovalPointRow[],
  timeoutMs: number,
): Promise<Map<string, RemovalPlan>> {
  const plans = new Map<string, RemovalPlan>();
  const row = await deps.db.remote.findUnique({ where: { id: remoteId } });
  if (!row) {
    for (const point of points) {
      plans.set(point.id, unknown("Its remote was removed from Cairn: removing the restore point only unlists it.", "UNLIST_ONLY"));
    }
    return plans;
  }
  const remote = deps.remotes.open(row);
  const vmUuids = [...new Set(points.map((point) => point.vmUuid))];
  const work = (async () => {
    await remote.open();
    const scans = new Map<string, VmFolderScan>();
    for (const vmUuid of vmUuids) scans.set(vmUuid, await scanVmFolder(remote, vmUuid));
    return scans;
  })();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const scans = await Promise.race([work, deadline]);
    if (scans === "timeout") {
      const why = `remote ${row.name} did not answer within ${Math.round(timeoutMs / 1000)} s`;
      for (const point of points) plans.set(point.id, cannotReadRemote(why));
      return plans;
    }
    for (const point of points) {
      plans.set(point.id, await planBackupRemoval(remote, row.name, scans.get(point.vmUuid)!, point));
    }
    return plans;
  } catch (error) {
    const why = `remote ${row.name} cannot be read (${messageOf(error)})`;
    for (const point of points) if (!plans.has(point.id)) plans.set(point.id, cannotReadRemote(why));
    return plans;
  } finally {
    clearTimeout(timer);
    // A scan still running past the deadline keeps the remote until it ends; closing never fails the answer.
    void work.catch(() => undefined).finally(() => remote.close().catch(() => undefined));
  }
}

function cannotReadRemote(why: string): RemovalPlan {
  return unknown(
    `Cairn cannot tell what removing it does now: ${why}. Removing it would fail the same way; try again once the remote answers.`,
  );
}

function unknown(description: string, action: RemovalAction = "UNKNOWN"): RemovalPlan {
  return {
    action,
    description,
    refusal: null,
    deletedFiles: [],
    freedBytes: action === "UNLIST_ONLY" ? 0 : null,
    merges: [],
    nextBackup: null,
    dependents: 0,
    poolName: null,
  };
}

/** Replays retention's decisions (unreferenced-files.ts, cleanDiskFolder) for the removal of one backup of the folder. */
async function planBackupRemoval(remote: Remote, remoteName: string, scan: VmFolderScan, point: RemovalPointRow): Promise<RemovalPlan> {
  const entry = scan.entries.find((candidate) => candidate.path === point.path);
  const chainBase = entry?.backup?.disks.every((disk) => disk.chain.length === 1) ?? false;
  const kindWords = point.kind === "XVA" ? "full backup" : chainBase ? "first backup of its delta chain (full disks)" : "delta backup";
  const what = `the ${kindWords} of ${timeWords(point.timestamp)}`;
  if (!entry) {
    return unknown(
      `Its backup ${point.path} is no longer on remote ${remoteName}: removing it only unlists the restore point.`,
      "UNLIST_ONLY",
    );
  }
  if (scan.unreadable.length > 0) {
    const files = scan.unreadable.map((file) => `${file.path} (${file.reason})`).join("; ");
    const refusal = `Nothing can be removed from this VM's backups on remote ${remoteName} now: ${scan.unreadable.length === 1 ? "a file" : `${scan.unreadable.length} files`} of them cannot be read: ${files}. Run a verify of its restore points, then try again.`;
    return { ...unknown(refusal), refusal };
  }
  if (isProtectedAt(entry.metadata, new Date())) {
    const until = immutableUntilOf(entry.metadata) as Date;
    const refusal = `${point.vmName}'s backup of ${readableTime(point.timestamp.getTime())} is immutable until ${readableTime(until.getTime())} on remote ${remoteName}: nobody can remove it before then, Cairn included.`;
    return { ...unknown(refusal), refusal };
  }

  const kept = scan.entries.filter((candidate) => candidate !== entry);
  const referenced = new Set<string>();
  for (const other of kept) for (const path of filesOf(scan.vmUuid, other)) referenced.add(path);
  const own = new Set(filesOf(scan.vmUuid, entry));
  const present = new Set(scan.files);
  const deleted: string[] = [entry.path];
  const merges: PlannedMerge[] = [];
  const keptBecause: string[] = [];
  const notes: string[] = [];

  const xva = [...own].find((path) => path.endsWith(".xva"));
  if (xva && !referenced.has(xva)) {
    deleted.push(xva);
    if (present.has(`${xva}.checksum`)) deleted.push(`${xva}.checksum`);
  }

  const way = mergeWayOf(remote);
  for (const [folderPath, original] of scan.vhdFolders) {
    if (![...original.nodes.keys()].some((path) => own.has(path))) continue;
    if (
      scan.files.some(
        (path) => path.startsWith(`${folderPath}/`) && (path.endsWith(".alias.vhd") || path.startsWith(`${folderPath}/data/`)),
      )
    ) {
      keptBecause.push(`${folderPath} holds Xen Orchestra VHD directories, which Cairn leaves to XO's cleaner`);
      continue;
    }
    if (scan.files.some((path) => path.startsWith(`${folderPath}/`) && path.endsWith(".vhd.merge.json"))) {
      notes.push(`an interrupted merge in ${folderPath} is finished first`);
    }
    const folder = new VhdFolder([...original.nodes.values()]);
    const disk = diskNameOf(entry, folderPath);
    const needed = (): Set<VhdIdentity> => {
      const set = new Set<VhdIdentity>();
      for (const node of folder.nodes.values()) {
        if (!referenced.has(node.path)) continue;
        for (let at = folder.parentOf(node); at && !set.has(at); at = folder.parentOf(at)) set.add(at);
      }
      return set;
    };
    // 1. its VHDs that no kept backup goes through are deleted, with their block checksums
    const keep = needed();
    for (const node of [...folder.nodes.values()]) {
      if (!own.has(node.path) || referenced.has(node.path) || keep.has(node)) continue;
      deleted.push(node.path);
      if (present.has(blockChecksumsPathOf(node.path))) deleted.push(blockChecksumsPathOf(node.path));
      folder.update(node.path, undefined);
    }
    // 2. the unreferenced VHDs kept backups build on are merged with their only child, root first (as retention does)
    for (;;) {
      const pending = [...needed()].filter((node) => !referenced.has(node.path));
      if (pending.length === 0) break;
      const depth = (node: VhdIdentity) => folder.chainOf(node.path).length;
      const parent = pending.sort((a, b) => depth(a) - depth(b))[0];
      const children = folder.childrenOf(parent);
      if (children.length !== 1) {
        keptBecause.push(
          `${children.length} newer VHDs of disk ${disk} build on ${parent.name}, so it cannot be merged until only one is left`,
        );
        break;
      }
      if (!way) {
        keptBecause.push(`merges do not run on this ${remote.kind} remote, and newer backups build on disk ${disk}'s VHD`);
        break;
      }
      const child = children[0];
      merges.push({ disk, parentPath: parent.path, childPath: child.path, estimatedBytes: child.fileSize });
      // The parent's path disappears (its blocks now live at the child's). Block checksums: the merged file keeps them
      // only when both had them; otherwise both tables go, as the merge does.
      deleted.push(parent.path);
      const sums = [blockChecksumsPathOf(parent.path), blockChecksumsPathOf(child.path)];
      const both = sums.every((path) => present.has(path));
      for (const path of both ? [sums[0]] : sums.filter((candidate) => present.has(candidate))) {
        deleted.push(path);
        present.delete(path);
      }
      folder.update(parent.path, undefined);
      // The merged file takes the child's path and identity, and the parent's place in the chain.
      folder.update(child.path, { ...child, differencing: parent.differencing, parentUuid: parent.parentUuid });
    }
  }

  const dependents = kept.filter((other) => other.backup?.disks.some((d) => d.chain.some((path) => own.has(path)))).length;
  const ownMerges = mergesCarrying(merges, own);
  const base = { refusal: null, merges: ownMerges, dependents, poolName: null };
  const afterNote = notes.length > 0 ? ` (${notes.join("; ")}.)` : "";

  if (ownMerges.length > 0) {
    // Another disk of the same backup may have to stay as it is: said too, so that nobody expects its space back.
    const staying = keptBecause.length > 0 ? ` Some of its VHDs stay: ${keptBecause.join("; ")}.` : "";
    const next = nextBackupOf(ownMerges, own, kept, scan.vmUuid);
    const bytes = ownMerges.filter((merge) => own.has(merge.parentPath)).reduce((sum, merge) => sum + merge.estimatedBytes, 0);
    const disks = new Set(ownMerges.map((merge) => merge.disk)).size;
    // The metadata's time is the backup's own (ms); the file name's is rounded to the second.
    const nextAt = next ? new Date(next.metadata?.timestamp ?? next.timestamp) : null;
    const nextWords = nextAt ? `the next backup, of ${timeWords(nextAt)},` : "the next backup";
    return {
      ...base,
      action: "MERGE_INTO_NEXT",
      description:
        `${capitalize(what)} is removed from remote ${remoteName}, but ${countWords(dependents, "newer backup")} ${dependents === 1 ? "builds" : "build"} on it: ` +
        `${nextWords} is merged into it${disks > 1 ? ` (${disks} disks)` : ""} and takes its place, so that ${dependents === 1 ? "it" : "they"} still ${dependents === 1 ? "restores" : "restore"}. ` +
        `The merge reads and writes about ${formatBytes(bytes)} (the next backup's size) and frees little space: only the blocks the next backup replaced.${staying}${afterNote}`,
      deletedFiles: deleted,
      freedBytes: null,
      nextBackup: next && nextAt ? { path: next.path, timestamp: nextAt } : null,
    };
  }
  const freedBytes = await sizeOf(remote, scan, deleted);
  if (keptBecause.length > 0) {
    return {
      ...base,
      action: "FILES_KEPT",
      description: `Only the metadata of ${what} is deleted from remote ${remoteName}: its VHDs stay, because ${keptBecause.join("; ")}. Nothing breaks; the space is freed by a later retention once that changes.${afterNote}`,
      deletedFiles: deleted,
      freedBytes,
      nextBackup: null,
    };
  }
  return {
    ...base,
    action: "DELETE_FILES",
    description: `${capitalize(what)} is deleted from remote ${remoteName} with its ${countWords(deleted.length, "file")}, freeing about ${formatBytes(freedBytes)}: no other backup needs ${deleted.length === 1 ? "it" : "them"}.${afterNote}`,
    deletedFiles: deleted,
    freedBytes,
    nextBackup: null,
  };
}

/** The remote paths of the files a backup's metadata names (none when it cannot be read or names a file outside). */
function filesOf(vmUuid: string, entry: MetadataEntry): string[] {
  if (!entry.metadata) return [];
  try {
    return filesOfMetadata(entry.metadata).map((relative) => resolveInVmDir(vmUuid, relative));
  } catch {
    return [];
  }
}

function diskNameOf(entry: MetadataEntry, folderPath: string): string {
  const disk = entry.backup?.disks.find((candidate) => candidate.chain.some((path) => folderOf(path) === folderPath));
  return disk?.name || disk?.vdiUuid || folderPath.slice(folderPath.lastIndexOf("/") + 1);
}

/** The merges that move the removed backup's blocks: those of its VHDs, and those of the files they were merged into. */
function mergesCarrying(merges: PlannedMerge[], own: Set<string>): PlannedMerge[] {
  const carrying = new Set(own);
  const chosen: PlannedMerge[] = [];
  for (const merge of merges) {
    if (!carrying.has(merge.parentPath)) continue;
    chosen.push(merge);
    carrying.add(merge.childPath);
  }
  return chosen;
}

/** The kept backup that ends up holding the removed one's blocks: the owner of the last child its merges lead to. */
function nextBackupOf(merges: PlannedMerge[], own: Set<string>, kept: MetadataEntry[], vmUuid: string): MetadataEntry | undefined {
  const first = merges.find((merge) => own.has(merge.parentPath));
  if (!first) return undefined;
  let target = first.childPath;
  for (let step = merges.find((merge) => merge.parentPath === target); step; step = merges.find((merge) => merge.parentPath === target)) {
    target = step.childPath;
  }
  return kept.find((other) => filesOf(vmUuid, other).includes(target));
}

/** The bytes of the files, from the VHD lineage where it has them, else from the remote (one stat each). */
async function sizeOf(remote: Remote, scan: VmFolderScan, paths: string[]): Promise<number> {
  let total = 0;
  for (const path of paths) {
    const known = scan.vhdFolders.get(folderOf(path))?.nodes.get(path)?.fileSize;
    total +=
      known ??
      (await remote.stat(path).then(
        (stat) => stat.size,
        () => 0,
      ));
  }
  return total;
}

/** A snapshot or replica: destroyed with its disks on its pool, if the pool is connected and (a replica) not running. */
async function planPoolRemoval(deps: RemovalPlanDeps, point: RemovalPointRow): Promise<RemovalPlan> {
  const pool = point.poolId ? await deps.db.pool.findUnique({ where: { id: point.poolId }, select: { name: true } }) : null;
  const poolName = pool?.name ?? null;
  const what = point.kind === "SNAPSHOT" ? `the snapshot of ${timeWords(point.timestamp)}` : `the replica of ${timeWords(point.timestamp)}`;
  const base = { deletedFiles: [], freedBytes: null, merges: [], nextBackup: null, dependents: 0, poolName };
  if (!poolName) {
    const refusal = `Its pool was removed from Cairn, so ${what} cannot be destroyed from here: connect its pool again first.`;
    return { ...base, action: "UNKNOWN", description: refusal, refusal };
  }
  const connection = deps.registry.get(point.poolId!);
  if (!connection || connection.status !== "CONNECTED") {
    const refusal = `Pool ${poolName} is not connected: ${what} cannot be destroyed now; try again once the pool is connected.`;
    return { ...base, action: "DESTROY_ON_POOL", description: `Destroys ${what} with its disks on pool ${poolName}. ${refusal}`, refusal };
  }
  const vm = connection.records("VM").find((record) => record.uuid === point.objectUuid);
  if (!vm) {
    return {
      ...base,
      action: "UNLIST_ONLY",
      freedBytes: 0,
      description: `${capitalize(what)} is no longer on pool ${poolName} (destroyed by hand or by retention): removing it only unlists the restore point.`,
      refusal: null,
    };
  }
  const name = String(vm.name_label);
  if (point.kind === "SNAPSHOT" || vm.is_a_snapshot) {
    return {
      ...base,
      action: "DESTROY_ON_POOL",
      description: `Destroys ${what} (${name}) with its disks on pool ${poolName}.`,
      refusal: null,
    };
  }
  const running = vm.power_state !== "Halted";
  const refusal = running ? `The replica ${name} is ${String(vm.power_state)}: shut it down before removing it.` : null;
  return {
    ...base,
    action: "DESTROY_ON_POOL",
    description: `Destroys ${what} (${name}) with its disks on pool ${poolName}; refused while it runs.${refusal ? ` ${refusal}` : ""}`,
    refusal,
  };
}

/** "2026-12-03 17:02:11 UTC": the same for every reader, whatever the server's zone. */
export function timeWords(time: Date): string {
  return `${time.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function countWords(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** Bytes in binary units, one decimal: "12.0 MiB". */
export function formatBytes(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}
