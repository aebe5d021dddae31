import type { Remote } from "../remotes/remote.js";
import { releaseEndedProtections } from "./immutability.js";
import { VM_BACKUPS_DIR, vmDir } from "./layout.js";
import { LOCK_EXPIRY_MS, type VmLockOptions, acquireVmLock } from "./lock.js";
import { remoteNow } from "./remote-clock.js";
import { RepositoryError, RepositoryErrorReason } from "./repository-error.js";
import { listVmUuids, scanVmFolder } from "./scanner.js";
import {
  type MergeStepListener,
  type MergedVhd,
  changeGuard,
  removeUnreferencedFiles,
  resumeMerges,
  unreadableProblem,
} from "./unreferenced-files.js";
import { messageOf } from "../errors.js";

export interface CleanOptions {
  /** Only this VM's folder. @default every VM folder */
  vmUuid?: string;
  /** The VM folder lock's options (owner: the run id). */
  lock?: VmLockOptions;
  /** Leftovers go only past this age, by the remote's clock. @default {@link LOCK_EXPIRY_MS} */
  minAgeMs?: number;
  onMergeStep?: MergeStepListener;
  /** Stops between two deletes or two merged blocks. */
  signal?: AbortSignal;
  /** The remote's time, for file ages. @default {@link remoteNow} */
  clock?: () => Promise<Date>;
}

export interface CleanResult {
  deletedFiles: string[];
  merged: MergedVhd[];
  /** Includes VM folders skipped because their lock is held (a live writer) or a file could not be read. */
  problems: string[];
}

/**
 * Tidies a repository after interruptions, per VM folder, under its lock (a folder whose lock is held, by a live writer
 * or a restore say, is skipped and reported): finishes interrupted merges, deletes temporary files of interrupted writes,
 * and deletes (or merges, see {@link removeUnreferencedFiles}) XVA and VHD files no metadata references, all only when
 * older than `minAgeMs` by the remote's clock. Fails closed per folder: a file that cannot be read means nothing is
 * deleted or merged there. Never touches a file a metadata references, so every backup stays restorable.
 */
export async function cleanRepository(remote: Remote, options: CleanOptions = {}): Promise<CleanResult> {
  const result: CleanResult = { deletedFiles: [], merged: [], problems: [] };
  const minAgeMs = options.minAgeMs ?? LOCK_EXPIRY_MS;
  const clock = options.clock ?? (() => remoteNow(remote, VM_BACKUPS_DIR));
  // Taken once, before any folder: a later folder's files only look younger than they are, which is the safe side.
  const now = await clock();
  const oldEnough = async (path: string) => now.getTime() - (await remote.stat(path)).mtime.getTime() >= minAgeMs;

  // temporary files beside the VM folders (a clock probe or a write of another version interrupted)
  for (const name of options.vmUuid === undefined ? await remote.list(VM_BACKUPS_DIR) : []) {
    const path = `${VM_BACKUPS_DIR}/${name}`;
    if (remote.isTemporaryName(name) && (await oldEnough(path).catch(() => false))) {
      await remote.delete(path);
      result.deletedFiles.push(path);
    }
  }
  const vms = options.vmUuid !== undefined ? [options.vmUuid] : await listVmUuids(remote);
  for (const vmUuid of vms) {
    options.signal?.throwIfAborted();
    let lock;
    try {
      lock = await acquireVmLock(remote, vmUuid, "clean", { ...options.lock, maintenance: true, signal: options.signal });
    } catch (error) {
      if (!(error instanceof RepositoryError && error.reason === RepositoryErrorReason.Locked)) throw error;
      result.problems.push(`VM ${vmUuid} not cleaned this time: ${error.message}`);
      continue;
    }
    try {
      const guard = changeGuard(lock, options.signal);
      const signal = options.signal ? AbortSignal.any([options.signal, lock.signal]) : lock.signal;
      let scan = await scanVmFolder(remote, vmUuid);
      if (scan.unreadable.length > 0) {
        result.problems.push(unreadableProblem(scan));
        continue;
      }
      // Protections whose window has ended are lifted before a merge or a delete meets them (FORMAT.md, "Immutability").
      guard();
      await releaseEndedProtections(remote, scan, now);
      const resumed = await resumeMerges(remote, scan, { onMergeStep: options.onMergeStep, guard, signal });
      result.merged.push(...resumed.merged);
      result.problems.push(...resumed.problems);
      if (resumed.merged.length > 0) {
        scan = await scanVmFolder(remote, vmUuid);
        if (scan.unreadable.length > 0) {
          result.problems.push(unreadableProblem(scan));
          continue;
        }
      }
      for (const path of scan.files) {
        const leftover = remote.isTemporaryName(path) || path.endsWith(".merge.json.tmp");
        if (leftover && (await oldEnough(path))) {
          guard();
          await remote.delete(path);
          result.deletedFiles.push(path);
        }
      }
      const cleaned = await removeUnreferencedFiles(remote, scan, {
        minAgeMs,
        now,
        onMergeStep: options.onMergeStep,
        skipFolders: resumed.blockedFolders,
        guard,
        signal,
      });
      result.deletedFiles.push(...cleaned.deletedFiles);
      result.merged.push(...cleaned.merged);
      result.problems.push(...scan.problems, ...cleaned.problems);
    } catch (error) {
      if (options.signal?.aborted) throw error;
      result.problems.push(`${vmDir(vmUuid)}: cleaning stopped (${messageOf(error)})`);
    } finally {
      await lock.release();
    }
  }
  return result;
}
