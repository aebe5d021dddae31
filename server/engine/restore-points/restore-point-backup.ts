/**
 * The backup behind a remote restore point (kind XVA or VHD_CHAIN), read from the remote itself (the source of truth):
 * its VM folder is scanned and the backup whose metadata path is the row's is returned, whole (every file present, every
 * chain linked), or an error saying what is missing. Used by VM restores and file-level restores.
 */
import type { Db } from "../../db/prisma.js";
import { CairnError, ErrorCode, messageOf } from "../../errors.js";
import { type VmLease, type VmLeaseOptions, acquireVmLease } from "../../repository/lock.js";
import { scanRepository, type ScannedBackup } from "../../repository/scanner.js";
import type { Remote } from "../../remotes/remote.js";
import type { StoredRemotes } from "../stored-remotes.js";

export interface RestorePointRow {
  id: string;
  kind: string;
  vmUuid: string;
  remoteId: string | null;
  path: string | null;
}

export interface OpenedBackup {
  remote: Remote;
  remoteName: string;
  backup: ScannedBackup;
  /** Aborts when the restore lease is lost (the reads must stop: a merge may now rewrite the files). */
  signal: AbortSignal;
  /** Releases the restore lease and closes the remote. */
  close(): Promise<void>;
}

/**
 * The backup is held under a restore lease on its VM folder from before the scan until `close()`: retention, merges and
 * the cleaner wait for it (and a restore waits while one of them runs: `lease.onWait` says so), so no file it reads is
 * rewritten or deleted under it.
 * @throws CairnError BAD_USER_INPUT when the point is not on a remote, NOT_FOUND when its remote is gone, UNAVAILABLE when
 *   the remote cannot be opened, NOT_FOUND when the backup is no longer complete on the remote (with the scanner's reason);
 *   RepositoryError LOCKED (CONFLICT) when retention held the VM's backups for longer than `lease.waitMs`
 */
export async function openRestorePointBackup(
  deps: { db: Db; remotes: StoredRemotes },
  point: RestorePointRow,
  options: { lease?: VmLeaseOptions } = {},
): Promise<OpenedBackup> {
  if (!point.remoteId || !point.path) {
    throw new CairnError(ErrorCode.BadInput, `Restore point ${point.id} is a ${point.kind}, not a backup on a remote.`, {
      field: "restorePointId",
    });
  }
  const row = await deps.db.remote.findUnique({ where: { id: point.remoteId } });
  if (!row) throw new CairnError(ErrorCode.NotFound, `The remote of restore point ${point.id} was removed.`, { id: point.remoteId });
  const remote = deps.remotes.open(row);
  try {
    await remote.open();
  } catch (error) {
    throw new CairnError(ErrorCode.Unavailable, `Remote ${row.name} cannot be opened: ${messageOf(error)}`, {}, { cause: error });
  }
  let lease: VmLease | undefined;
  const closeAll = async () => {
    await lease?.release(); // never fails: a claim that cannot be deleted goes stale by itself
    // Closing only releases connections: the restore's outcome (or the error being thrown) is already decided.
    await remote.close().catch(() => undefined);
  };
  try {
    lease = await acquireVmLease(remote, point.vmUuid, `restore of ${point.path}`, options.lease);
    const scan = await scanRepository(remote, { vmUuid: point.vmUuid });
    const backup = scan.backups.find((b) => b.metadataPath === point.path);
    if (!backup) {
      // What the scan found wrong with this backup or in its VM folder (the scan covered that folder only).
      const reasons = scan.issues
        .filter((issue) => issue.path === point.path || issue.vmUuid === point.vmUuid)
        .map((issue) => issue.message);
      throw new CairnError(
        ErrorCode.NotFound,
        `The backup ${point.path} is no longer complete on remote ${row.name}${reasons.length ? ` (${reasons.join("; ")})` : " (its metadata is gone)"}; rescan the remote (scanRemote) and pick another restore point.`,
        { id: point.id },
      );
    }
    return { remote, remoteName: row.name, backup, signal: lease.signal, close: closeAll };
  } catch (error) {
    await closeAll();
    throw error;
  }
}
