import { isAbsolute } from "node:path";
import {
  type MergeStep,
  type MergeStorage,
  type VhdFile,
  finishMergeWithoutState,
  mergeVhdChain,
  verifyVhdFile,
} from "../formats/vhd/index.js";
import type { Remote } from "../remotes/remote.js";
import { canMergeByComposition, mergeByComposition } from "./composed-merge.js";
import { backupFilePaths, isProtectedAt, keptImmutableWarning } from "./immutability.js";
import { BLOCK_CHECKSUMS_SUFFIX, blockChecksumsPathOf, folderOf, nameOf, resolveInVmDir, vdiUuidOfPath, vmDir } from "./layout.js";
import { canUpdateInPlace, remoteMergeStorage } from "./merge-storage.js";
import { openRemoteVhd, readBlockChecksums } from "./remote-vhd.js";
import type { VmLock } from "./lock.js";
import { filesOfMetadata } from "./metadata.js";
import { RepositoryError, RepositoryErrorReason } from "./repository-error.js";
import type { MetadataEntry, VmFolderScan } from "./scanner.js";
import { type VhdFolder, type VhdIdentity, readVhdIdentity } from "./vhd-lineage.js";
import { messageOf } from "../errors.js";

/** One merge done (or finished after an interruption): `parent` was merged into `child`, whose path now holds both. */
export interface MergedVhd {
  parent: string;
  child: string;
  resumed: boolean;
}

/** Called with each durable step of a merge (for progress). An error thrown stops the merge exactly as a crash would. */
export type MergeStepListener = (merge: { parent: string; child: string; step: MergeStep }) => void | Promise<void>;

/**
 * Called before every delete and every merge step: throws when the caller may no longer change the folder (its lock was
 * lost, its run was cancelled). What it throws stops the work where it stands; everything done so far is consistent.
 */
export type ChangeGuard = () => void;

/** Before each change: the lock must still be ours and the run not cancelled. */
export function changeGuard(lock: VmLock, signal: AbortSignal | undefined): ChangeGuard {
  return () => {
    signal?.throwIfAborted();
    lock.assertHeld();
  };
}

export interface UnreferencedFilesOptions {
  /** Files that may go whatever their age (those of backups just removed, under the lock). */
  justRemoved?: ReadonlySet<string>;
  /** Other unreferenced files go only when older than this, by the remote's clock (`now`). */
  minAgeMs: number;
  /** The remote's time (see remote-clock.ts). */
  now: Date;
  onMergeStep?: MergeStepListener;
  /** Disk folders not to touch (a merge there could not be resumed). */
  skipFolders?: ReadonlySet<string>;
  guard?: ChangeGuard;
  /** Stops a merge between two blocks (resumable, as after a crash). */
  signal?: AbortSignal;
}

export interface UnreferencedFilesResult {
  deletedFiles: string[];
  merged: MergedVhd[];
  problems: string[];
}

/** What {@link resumeMerges} needs beside the scan. */
export interface ResumeOptions {
  onMergeStep?: MergeStepListener;
  guard?: ChangeGuard;
  signal?: AbortSignal;
}

/**
 * Finishes every interrupted merge of a VM folder: those with a state file (`<child>.vhd.merge.json`), and those whose
 * state file was lost after the identity step (two VHDs of one folder with one uuid: the older one already is the merged
 * disk, only the rename is left). Runs where merges run ({@link mergeWayOf}); elsewhere each is a problem (Cairn never
 * starts a merge there, so none should exist).
 * @returns the folders where a merge could not be finished (leave them alone)
 */
export async function resumeMerges(
  remote: Remote,
  scan: VmFolderScan,
  options: ResumeOptions = {},
): Promise<{ merged: MergedVhd[]; problems: string[]; blockedFolders: Set<string> }> {
  const merged: MergedVhd[] = [];
  const problems: string[] = [];
  const blockedFolders = new Set<string>();
  const way = mergeWayOf(remote);
  const present = new Set(scan.files);
  const sidecar = (path: string) => (present.has(blockChecksumsPathOf(path)) ? blockChecksumsPathOf(path) : undefined);
  const stateFiles = scan.files.filter((path) => path.endsWith(".vhd.merge.json") && vdiUuidOfPath(path) !== undefined);
  for (const statePath of stateFiles) {
    const folder = folderOf(statePath);
    const child = statePath.slice(0, -".merge.json".length);
    try {
      if (!way) throw cannotMerge(remote, `cannot resume the merge recorded in ${statePath}`);
      options.guard?.();
      const parent = await parentOfStateFile(remote, statePath, child, way);
      await runMerge(remote, way, {
        parent,
        child,
        ...checksumPaths(present, parent, child),
        signal: options.signal,
        onStep: async (step) => {
          options.guard?.();
          await options.onMergeStep?.({ parent, child, step });
        },
      });
      merged.push({ parent, child, resumed: true });
    } catch (error) {
      blockedFolders.add(folder);
      problems.push(
        `${statePath}: the interrupted merge could not be finished (${messageOf(error)}); this disk folder is left as it is, its chains still read right`,
      );
    }
  }
  for (const [folderPath, folder] of scan.vhdFolders) {
    if (blockedFolders.has(folderPath) || stateFiles.some((path) => folderOf(path) === folderPath)) continue;
    for (const pair of mergedPairsWithoutState(folder)) {
      try {
        // Finishing it means renaming a parent that was changed in place: a merge by composition resumes from its state file.
        if (way?.kind !== "in-place") throw cannotMerge(remote, `cannot finish the merge of ${pair.parent.path} into ${pair.child.path}`);
        options.guard?.();
        const outcome = await finishMergeWithoutState({
          parent: pair.parent.path,
          child: pair.child.path,
          parentChecksums: sidecar(pair.parent.path),
          childChecksums: sidecar(pair.child.path),
          storage: way.storage,
        });
        if (outcome === "finished") merged.push({ parent: pair.parent.path, child: pair.child.path, resumed: true });
        else throw new Error("the two files do not look like a merge whose identity step was done");
      } catch (error) {
        blockedFolders.add(folderPath);
        problems.push(
          `${pair.child.path}: a merge whose state file is gone could not be finished (${messageOf(error)}); this disk folder is left as it is, its chains still read right`,
        );
      }
    }
  }
  return { merged, problems, blockedFolders };
}

/**
 * How VHD merges run on a remote: in place through its protocol where it can change a file at an offset (LOCAL, SMB,
 * NFS: {@link Remote.openForUpdate}), else by composing the merged file where the remote knows how (S3), else not at all.
 */
export type MergeWay = { kind: "in-place"; storage: MergeStorage } | { kind: "composition" } | undefined;

export function mergeWayOf(remote: Remote): MergeWay {
  if (canUpdateInPlace(remote)) return { kind: "in-place", storage: remoteMergeStorage(remote) };
  if (canMergeByComposition(remote)) return { kind: "composition" };
  return undefined;
}

/** One merge of `parent` into `child` (remote paths), started or resumed; its state file is `<child>.merge.json`. */
async function runMerge(
  remote: Remote,
  way: NonNullable<MergeWay>,
  merge: {
    parent: string;
    child: string;
    parentChecksums?: string;
    childChecksums?: string;
    signal?: AbortSignal;
    onStep: (step: MergeStep) => Promise<void>;
  },
): Promise<void> {
  if (way.kind === "in-place") await mergeVhdChain({ ...merge, statePath: `${merge.child}.merge.json`, storage: way.storage });
  else await mergeByComposition(remote, merge);
}

/**
 * The parent (a remote path) of the merge a state file records. State files hold the paths the merge was given: remote
 * paths now; absolute paths of this machine in those older versions wrote on a LOCAL remote (`<root>/<remote path>`).
 * Those are mapped back to remote paths and, for an in-place merge, the state file is rewritten with them (atomically:
 * a crash leaves the old one or the new one, both understood here) so that the merge recognises it as its own.
 * @throws Error when the state file names another child, or a parent outside the child's folder
 */
async function parentOfStateFile(remote: Remote, statePath: string, child: string, way: NonNullable<MergeWay>): Promise<string> {
  const state = JSON.parse((await remote.readFile(statePath)).toString("utf8")) as Record<string, unknown>;
  const named = { parent: state.parent, child: state.child };
  if (typeof named.parent !== "string" || typeof named.child !== "string") throw new Error("the state file names no parent or no child");
  let parent = named.parent;
  if (named.child !== child) {
    const root = isAbsolute(named.child) && named.child.endsWith(`/${child}`) ? named.child.slice(0, -child.length) : undefined;
    if (root === undefined || !parent.startsWith(root)) throw new Error(`the state file names ${named.child}, expected ${child}`);
    parent = parent.slice(root.length);
  }
  if (folderOf(parent) !== folderOf(child) || !nameOf(parent).endsWith(".vhd"))
    throw new Error(`the state file names ${named.parent} as the parent, which is not a VHD beside ${child}`);
  if (way.kind === "in-place" && (state.parent !== parent || state.child !== child))
    await remote.writeFile(statePath, JSON.stringify({ ...state, parent, child }));
  return parent;
}

/** Two files of one folder carrying one uuid: the older took the newer's identity in a merge whose state file is gone. */
function mergedPairsWithoutState(folder: VhdFolder): Array<{ parent: VhdIdentity; child: VhdIdentity }> {
  const byUuid = new Map<string, VhdIdentity[]>();
  for (const node of folder.nodes.values()) byUuid.set(node.uuid, [...(byUuid.get(node.uuid) ?? []), node]);
  const pairs: Array<{ parent: VhdIdentity; child: VhdIdentity }> = [];
  for (const same of byUuid.values()) {
    if (same.length !== 2) continue;
    const [parent, child] = same.sort((a, b) => a.name.localeCompare(b.name));
    pairs.push({ parent, child });
  }
  return pairs;
}

/** The paths of both sidecars when either VHD has one; merged checksums need the parent's table and the child's. */
function checksumPaths(present: ReadonlySet<string>, parent: string, child: string): { parentChecksums?: string; childChecksums?: string } {
  const parentSums = blockChecksumsPathOf(parent);
  const childSums = blockChecksumsPathOf(child);
  // Either one present is enough on a resume: an interrupted merge may already have deleted the parent's table (its last
  // steps), and mergeVhdChain uses each path only if the file is there.
  if (present.has(parentSums) || present.has(childSums)) return { parentChecksums: parentSums, childChecksums: childSums };
  return {};
}

/**
 * Removes what no metadata references, keeping every referenced backup restorable:
 * - an XVA (and its `.checksum`) no metadata names is deleted;
 * - a VHD no metadata names and no referenced VHD descends from is deleted, with its block checksums;
 * - a VHD no metadata names but a referenced VHD descends from is merged into its child (parent into child, root first),
 *   so the child's path ends up holding both: where merges run ({@link mergeWayOf}); elsewhere it stays, with a problem.
 * Fails closed: when any file of the folder could not be read ({@link VmFolderScan.unreadable}), nothing is touched.
 * Folders holding XO VHD directories (`.alias.vhd`, `data/`) are left alone.
 */
export async function removeUnreferencedFiles(
  remote: Remote,
  scan: VmFolderScan,
  options: UnreferencedFilesOptions,
): Promise<UnreferencedFilesResult> {
  const result: UnreferencedFilesResult = { deletedFiles: [], merged: [], problems: [] };
  if (scan.unreadable.length > 0) {
    result.problems.push(unreadableProblem(scan));
    return result;
  }
  const dir = vmDir(scan.vmUuid);
  const referenced = new Set<string>();
  for (const entry of scan.entries) {
    for (const relative of entry.metadata ? filesOfMetadata(entry.metadata) : []) {
      try {
        referenced.add(resolveInVmDir(scan.vmUuid, relative));
      } catch (error) {
        result.problems.push(`${entry.path}: ${messageOf(error)}`);
        return result; // a metadata naming a file outside the folder: what it needs is unknown, so touch nothing
      }
    }
  }
  const isReferenced = (path: string) => referenced.has(path);
  // Files of backups still immutable (FORMAT.md, "Immutability"): all referenced, so never deleted; never merged into.
  const protectedBy = new Map<string, MetadataEntry>();
  for (const entry of scan.entries) {
    if (!isProtectedAt(entry.metadata, options.now)) continue;
    for (const path of backupFilePaths(scan.vmUuid, entry)) protectedBy.set(path, entry);
  }
  const eligible = async (path: string): Promise<boolean> => {
    if (options.justRemoved?.has(path)) return true;
    const { mtime } = await remote.stat(path);
    return options.now.getTime() - mtime.getTime() >= options.minAgeMs;
  };
  const present = new Set(scan.files);
  const deleteNow = async (path: string): Promise<void> => {
    options.guard?.();
    await remote.delete(path);
    result.deletedFiles.push(path);
    present.delete(path);
  };
  const remove = async (path: string, eligibleAs = path): Promise<boolean> => {
    if (!(await eligible(eligibleAs))) return false;
    await deleteNow(path);
    return true;
  };
  const removeVhd = async (path: string): Promise<boolean> => {
    if (!(await remove(path))) return false;
    // its checksums go with it, whatever their own age: they describe nothing any more
    if (present.has(blockChecksumsPathOf(path))) await deleteNow(blockChecksumsPathOf(path));
    return true;
  };

  for (const path of scan.files) {
    if (folderOf(path) !== dir || remote.isTemporaryName(path)) continue;
    const xva = path.endsWith(".xva.checksum") ? path.slice(0, -".checksum".length) : path;
    if (xva.endsWith(".xva") && !isReferenced(xva)) await remove(path, xva);
  }

  for (const [folderPath, folder] of scan.vhdFolders) {
    if (options.skipFolders?.has(folderPath)) continue;
    if (
      scan.files.some(
        (path) => path.startsWith(`${folderPath}/`) && (path.endsWith(".alias.vhd") || path.startsWith(`${folderPath}/data/`)),
      )
    ) {
      result.problems.push(`${folderPath}: holds Xen Orchestra VHD directories; Cairn leaves this folder to XO's cleaner`);
      continue;
    }
    try {
      await cleanDiskFolder(remote, folderPath, folder, isReferenced, removeVhd, present, protectedBy, options, result);
    } catch (error) {
      if (isStop(error, options)) throw error;
      result.problems.push(`${folderPath}: ${messageOf(error)}; the folder is left as it is, its chains still read right`);
    }
  }
  // block checksums whose VHD is gone (a crash between the two deletes, or between the two writes of a backup)
  for (const path of [...present]) {
    if (!path.endsWith(`.vhd${BLOCK_CHECKSUMS_SUFFIX}`) || vdiUuidOfPath(path) === undefined) continue;
    if (!present.has(path.slice(0, -BLOCK_CHECKSUMS_SUFFIX.length))) await remove(path);
  }
  return result;
}

/** The one sentence saying why a folder was left untouched. */
export function unreadableProblem(scan: VmFolderScan): string {
  const files = scan.unreadable.map((file) => `${file.path} (${file.reason})`).join("; ");
  return `${vmDir(scan.vmUuid)}: nothing was deleted or merged, because ${scan.unreadable.length === 1 ? "a file" : `${scan.unreadable.length} files`} of this VM's backups could not be read: ${files}. A later run tries again; if the problem stays, run a verify of this VM's restore points`;
}

function isStop(error: unknown, options: UnreferencedFilesOptions): boolean {
  return (error instanceof RepositoryError && error.reason === RepositoryErrorReason.Locked) || options.signal?.aborted === true;
}

async function cleanDiskFolder(
  remote: Remote,
  folderPath: string,
  folder: VhdFolder,
  isReferenced: (path: string) => boolean,
  removeVhd: (path: string) => Promise<boolean>,
  present: Set<string>,
  protectedBy: ReadonlyMap<string, MetadataEntry>,
  options: UnreferencedFilesOptions,
  result: UnreferencedFilesResult,
): Promise<void> {
  const needed = (): Set<VhdIdentity> => {
    const set = new Set<VhdIdentity>();
    for (const node of folder.nodes.values()) {
      if (!isReferenced(node.path)) continue;
      for (let at = folder.parentOf(node); at && !set.has(at); at = folder.parentOf(at)) set.add(at);
    }
    return set;
  };
  // 1. unreferenced VHDs nothing live descends from
  const keep = needed();
  for (const node of [...folder.nodes.values()]) {
    if (isReferenced(node.path) || keep.has(node)) continue;
    if (await removeVhd(node.path)) folder.update(node.path, undefined);
  }
  // 2. unreferenced VHDs under a live one: merge each into its child, root first
  const way = mergeWayOf(remote);
  for (;;) {
    const pending = [...needed()].filter((node) => !isReferenced(node.path));
    if (pending.length === 0) return;
    const depth = (node: VhdIdentity) => folder.chainOf(node.path).length;
    const parent = pending.sort((a, b) => depth(a) - depth(b))[0];
    const children = folder.childrenOf(parent);
    if (children.length !== 1) {
      result.problems.push(
        `${parent.path}: no backup needs it any more, but ${children.length} VHDs build on it (${children.map((c) => c.name).join(", ")}), so it cannot be merged; it stays until they are gone`,
      );
      return;
    }
    if (!way) {
      result.problems.push(
        `${folderPath}: merges are not available on this ${remote.kind} remote (${remote.name}); ${pending.map((node) => node.name).join(", ")} no longer belong to a backup but stay, because newer backups build on them (nothing is broken; the space is freed once merges run here)`,
      );
      return;
    }
    const child = children[0];
    const immutable = protectedBy.get(child.path) ?? protectedBy.get(parent.path);
    if (immutable) {
      // A merge renames the merged parent onto the child's path: an immutable child cannot be replaced. The parent stays,
      // unreferenced but needed, and the chain reads right; the first retention after the window merges it.
      result.problems.push(
        `${keptImmutableWarning(immutable, String(immutable.metadata?.vm?.uuid ?? "?"))}; ${parent.name}, which it builds on and no backup keeps any more, is merged into it once that has passed (nothing is broken; only its space is not freed yet)`,
      );
      return;
    }
    options.guard?.();
    const both = present.has(blockChecksumsPathOf(parent.path)) && present.has(blockChecksumsPathOf(child.path));
    if (both) {
      // The child's blocks are checked before the merge starts: a damaged one found mid-merge would leave the merge
      // unfinished, and its parent read unverified until it is repaired. A delta is small; reading it twice is cheap.
      const damage = await damagedBlocks(remote, child.path, blockChecksumsPathOf(child.path), options.signal);
      if (damage) {
        result.problems.push(
          `${child.path}: not merged, because it is damaged (${damage}); the backups reading through it cannot be trusted: run a verify`,
        );
        return;
      }
    }
    if (!both) {
      // One of the two has no checksums (written before Cairn recorded them), so the merged file can have none: its
      // sidecar goes first, so that no crash can leave a sidecar describing a file that has since changed.
      for (const path of [blockChecksumsPathOf(parent.path), blockChecksumsPathOf(child.path)]) {
        if (!present.has(path)) continue;
        options.guard?.();
        await remote.delete(path);
        present.delete(path);
        result.deletedFiles.push(path);
      }
    }
    await runMerge(remote, way, {
      parent: parent.path,
      child: child.path,
      ...(both ? checksumPaths(present, parent.path, child.path) : {}),
      signal: options.signal,
      onStep: async (step) => {
        options.guard?.();
        await options.onMergeStep?.({ parent: parent.path, child: child.path, step });
      },
    });
    result.merged.push({ parent: parent.path, child: child.path, resumed: false });
    present.delete(blockChecksumsPathOf(parent.path));
    folder.update(parent.path, undefined);
    folder.update(child.path, await readVhdIdentity(remote, child.path));
  }
}

/** A sentence naming the damaged blocks of a VHD checked against its table, or undefined when every block is intact. */
async function damagedBlocks(remote: Remote, path: string, sumsPath: string, signal: AbortSignal | undefined): Promise<string | undefined> {
  let file: VhdFile;
  try {
    const checksums = await readBlockChecksums(remote, sumsPath);
    file = await openRemoteVhd(remote, path, checksums);
  } catch (error) {
    return messageOf(error);
  }
  try {
    const { damaged } = await verifyVhdFile(file, { signal });
    return damaged.length === 0
      ? undefined
      : `VHD_CHECKSUM_MISMATCH in block${damaged.length > 1 ? "s" : ""} ${damaged.map((d) => d.block).join(", ")}`;
  } finally {
    await file.close();
  }
}

function cannotMerge(remote: Remote, what: string): RepositoryError {
  return new RepositoryError(
    RepositoryErrorReason.NeedsLocalRemote,
    `${what}: VHD merges are not available on this ${remote.kind} remote (${remote.name}); they run on LOCAL, SMB and NFS remotes`,
  );
}
