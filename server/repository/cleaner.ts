import type { Remote } from "../remotes/remote.js";
import { VM_BACKUPS_DIR } from "./layout.js";
import { LOCK_EXPIRY_MS, type VmLockOptions, acquireVmLock } from "./lock.js";
import { RepositoryError, RepositoryErrorReason, messageOf } from "./repository-error.js";
import { listVmUuids, scanVmFolder } from "./scanner.js";
import { type MergeStepListener, type MergedVhd, removeUnreferencedFiles, resumeMerges } from "./unreferenced-files.js";

export interface CleanOptions {
  /** Only this VM's folder. @default every VM folder */
  vmUuid?: string;
  /** The VM folder lock's options; its clock also dates files. */
  lock?: VmLockOptions;
  /** Leftovers go only past this age (a live writer refreshes its lock far more often). @default {@link LOCK_EXPIRY_MS} */
  minAgeMs?: number;
  onMergeStep?: MergeStepListener;
}

export interface CleanResult {
  deletedFiles: string[];
  merged: MergedVhd[];
  /** Includes VM folders skipped because their lock is held (a live writer). */
  problems: string[];
}

/**
 * Tidies a repository after interruptions, per VM folder, under its lock (a folder whose lock is held, by a live writer
 * say, is skipped and reported): finishes interrupted merges, deletes temporary files of interrupted writes, and deletes
 * (or merges, see {@link removeUnreferencedFiles}) XVA and VHD files no metadata references, all only when older than
 * `minAgeMs`. Never touches a file a metadata references, so every backup stays restorable.
 */
export async function cleanRepository(remote: Remote, options: CleanOptions = {}): Promise<CleanResult> {
  const result: CleanResult = { deletedFiles: [], merged: [], problems: [] };
  const now = (options.lock?.now ?? (() => new Date()))();
  const minAgeMs = options.minAgeMs ?? LOCK_EXPIRY_MS;
  const oldEnough = async (path: string) => now.getTime() - (await remote.stat(path)).mtime.getTime() >= minAgeMs;

  // temporary files beside the VM folders (lock files being replaced)
  for (const name of options.vmUuid === undefined ? await remote.list(VM_BACKUPS_DIR) : []) {
    const path = `${VM_BACKUPS_DIR}/${name}`;
    if (remote.isTemporaryName(name) && (await oldEnough(path).catch(() => false))) {
      await remote.delete(path);
      result.deletedFiles.push(path);
    }
  }
  const vms = options.vmUuid !== undefined ? [options.vmUuid] : await listVmUuids(remote);
  for (const vmUuid of vms) {
    let lock;
    try {
      lock = await acquireVmLock(remote, vmUuid, "clean", options.lock);
    } catch (error) {
      if (!(error instanceof RepositoryError && error.reason === RepositoryErrorReason.Locked)) throw error;
      result.problems.push(`VM ${vmUuid} not cleaned this time: ${error.message}`);
      continue;
    }
    try {
      const first = await scanVmFolder(remote, vmUuid);
      const resumed = await resumeMerges(remote, first, options.onMergeStep);
      result.merged.push(...resumed.merged);
      result.problems.push(...resumed.problems);
      const scan = resumed.merged.length > 0 ? await scanVmFolder(remote, vmUuid) : first;
      for (const path of scan.files) {
        const leftover = remote.isTemporaryName(path) || path.endsWith(".merge.json.tmp");
        if (leftover && (await oldEnough(path))) {
          await remote.delete(path);
          result.deletedFiles.push(path);
        }
      }
      const cleaned = await removeUnreferencedFiles(remote, scan, { minAgeMs, now, onMergeStep: options.onMergeStep, skipFolders: resumed.blockedFolders });
      result.deletedFiles.push(...cleaned.deletedFiles);
      result.merged.push(...cleaned.merged);
      result.problems.push(...scan.problems, ...cleaned.problems);
    } catch (error) {
      result.problems.push(`VM ${vmUuid}: cleaning stopped (${messageOf(error)})`);
    } finally {
      await lock.release();
    }
  }
  return result;
}
