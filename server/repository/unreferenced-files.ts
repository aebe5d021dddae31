import { mergeVhdChain, type MergeStep } from "../formats/vhd/index.js";
import type { Remote } from "../remotes/remote.js";
import { folderOf, formatBackupTimestamp, nameOf, resolveInVmDir, vdiUuidOfPath, vmDir } from "./layout.js";
import { localPathsOf } from "./local-path.js";
import { filesOfMetadata } from "./metadata.js";
import { RepositoryError, RepositoryErrorReason, messageOf } from "./repository-error.js";
import type { VmFolderScan } from "./scanner.js";
import { type VhdFolder, type VhdIdentity, readVhdIdentity } from "./vhd-lineage.js";

/** One merge done (or finished after an interruption): `parent` was merged into `child`, whose path now holds both. */
export interface MergedVhd {
  parent: string;
  child: string;
  resumed: boolean;
}

/** Called with each durable step of a merge (for progress). An error thrown stops the merge exactly as a crash would. */
export type MergeStepListener = (merge: { parent: string; child: string; step: MergeStep }) => void | Promise<void>;

export interface UnreferencedFilesOptions {
  /** Files that may go whatever their age (those of backups just removed, under the lock). */
  justRemoved?: ReadonlySet<string>;
  /** Other unreferenced files go only when older than this. */
  minAgeMs: number;
  now: Date;
  onMergeStep?: MergeStepListener;
  /** Disk folders not to touch (a merge there could not be resumed). */
  skipFolders?: ReadonlySet<string>;
}

export interface UnreferencedFilesResult {
  deletedFiles: string[];
  merged: MergedVhd[];
  problems: string[];
}

/**
 * Finishes every interrupted merge of a VM folder (state files `<child>.vhd.merge.json`). Needs local files; on another
 * kind of remote each state file is a problem (Cairn never starts a merge there, so none should exist).
 * @returns the folders where a merge could not be finished (leave them alone)
 */
export async function resumeMerges(remote: Remote, scan: VmFolderScan, onMergeStep?: MergeStepListener): Promise<{ merged: MergedVhd[]; problems: string[]; blockedFolders: Set<string> }> {
  const merged: MergedVhd[] = [];
  const problems: string[] = [];
  const blockedFolders = new Set<string>();
  const local = localPathsOf(remote);
  for (const statePath of scan.files.filter((path) => path.endsWith(".vhd.merge.json") && vdiUuidOfPath(path) !== undefined)) {
    const folder = folderOf(statePath);
    const child = statePath.slice(0, -".merge.json".length);
    try {
      if (!local) throw needsLocal(`cannot resume the merge recorded in ${statePath}`);
      const state = JSON.parse((await remote.readFile(statePath)).toString("utf8")) as { parent?: unknown; child?: unknown };
      if (typeof state.parent !== "string" || state.child !== local(child)) throw new Error(`the state file names ${String(state.child)}, expected ${local(child)}`);
      const parentLocal = state.parent;
      const parent = `${folder}/${nameOf(parentLocal)}`;
      await mergeVhdChain({ parent: parentLocal, child: local(child), statePath: local(statePath), onStep: (step) => onMergeStep?.({ parent, child, step }) });
      merged.push({ parent, child, resumed: true });
    } catch (error) {
      blockedFolders.add(folder);
      problems.push(`${statePath}: the interrupted merge could not be finished (${messageOf(error)}); this disk folder is left as it is, its chains still read right`);
    }
  }
  return { merged, problems, blockedFolders };
}

/**
 * Removes what no metadata references, keeping every referenced backup restorable:
 * - an XVA (and its `.checksum`) no metadata names is deleted;
 * - a VHD no metadata names and no referenced VHD descends from is deleted;
 * - a VHD no metadata names but a referenced VHD descends from is merged into its child (parent into child, root first),
 *   so the child's path ends up holding both: on a LOCAL remote only; elsewhere it stays, with a problem.
 * Files of an unreadable metadata (same date in the name) count as referenced: nothing is deleted on a guess.
 * Folders holding XO VHD directories (`.alias.vhd`, `data/`) are left alone.
 */
export async function removeUnreferencedFiles(remote: Remote, scan: VmFolderScan, options: UnreferencedFilesOptions): Promise<UnreferencedFilesResult> {
  const result: UnreferencedFilesResult = { deletedFiles: [], merged: [], problems: [] };
  const dir = vmDir(scan.vmUuid);
  const referenced = new Set<string>();
  const protectedDates = new Set<string>();
  for (const entry of scan.entries) {
    if (entry.metadata) {
      for (const relative of filesOfMetadata(entry.metadata)) {
        try {
          referenced.add(resolveInVmDir(scan.vmUuid, relative));
        } catch (error) {
          result.problems.push(`${entry.path}: ${messageOf(error)}`);
        }
      }
    } else {
      protectedDates.add(formatBackupTimestamp(entry.timestamp));
    }
  }
  const isReferenced = (path: string) => referenced.has(path) || protectedDates.has(nameOf(path).replace(/\..*$/, ""));
  const eligible = async (path: string): Promise<boolean> => {
    if (options.justRemoved?.has(path)) return true;
    const { mtime } = await remote.stat(path);
    return options.now.getTime() - mtime.getTime() >= options.minAgeMs;
  };
  const remove = async (path: string) => {
    if (!(await eligible(path))) return;
    await remote.delete(path);
    result.deletedFiles.push(path);
  };

  for (const path of scan.files) {
    if (folderOf(path) !== dir || remote.isTemporaryName(path)) continue;
    const xva = path.endsWith(".xva.checksum") ? path.slice(0, -".checksum".length) : path;
    if (xva.endsWith(".xva") && !isReferenced(xva)) await remove(path);
  }

  for (const [folderPath, folder] of scan.vhdFolders) {
    if (options.skipFolders?.has(folderPath)) continue;
    if (scan.files.some((path) => path.startsWith(`${folderPath}/`) && (path.endsWith(".alias.vhd") || path.startsWith(`${folderPath}/data/`)))) {
      result.problems.push(`${folderPath}: holds Xen Orchestra VHD directories; Cairn leaves this folder to XO's cleaner`);
      continue;
    }
    try {
      await cleanDiskFolder(remote, folderPath, folder, isReferenced, remove, options, result);
    } catch (error) {
      result.problems.push(`${folderPath}: ${messageOf(error)}; the folder is left as it is, its chains still read right`);
    }
  }
  return result;
}

async function cleanDiskFolder(
  remote: Remote,
  folderPath: string,
  folder: VhdFolder,
  isReferenced: (path: string) => boolean,
  remove: (path: string) => Promise<void>,
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
    await remove(node.path);
    if (result.deletedFiles.includes(node.path)) folder.update(node.path, undefined);
  }
  // 2. unreferenced VHDs under a live one: merge each into its child, root first
  const local = localPathsOf(remote);
  for (;;) {
    const pending = [...needed()].filter((node) => !isReferenced(node.path));
    if (pending.length === 0) return;
    const depth = (node: VhdIdentity) => folder.chainOf(node.path).length;
    const parent = pending.sort((a, b) => depth(a) - depth(b))[0];
    const children = folder.childrenOf(parent);
    if (children.length !== 1) {
      result.problems.push(`${parent.path}: no backup needs it any more, but ${children.length} VHDs build on it (${children.map((c) => c.name).join(", ")}), so it cannot be merged; it stays until they are gone`);
      return;
    }
    if (!local) {
      result.problems.push(
        `${folderPath}: merges need a LOCAL remote for now; ${pending.map((node) => node.name).join(", ")} no longer belong to a backup but stay, because newer backups build on them (nothing is broken; the space is freed once merges run here)`,
      );
      return;
    }
    const child = children[0];
    await mergeVhdChain({
      parent: local(parent.path),
      child: local(child.path),
      statePath: local(`${child.path}.merge.json`),
      onStep: (step) => options.onMergeStep?.({ parent: parent.path, child: child.path, step }),
    });
    result.merged.push({ parent: parent.path, child: child.path, resumed: false });
    folder.update(parent.path, undefined);
    folder.update(child.path, await readVhdIdentity(remote, child.path));
  }
}

function needsLocal(what: string): RepositoryError {
  return new RepositoryError(RepositoryErrorReason.NeedsLocalRemote, `${what}: VHD merges need a LOCAL remote for now`);
}

