/**
 * `removeRestorePoint`: deletes what a restore point stands for, then its row. A backup on a remote goes the way retention
 * removes one (metadata first, then the files no other backup needs, merging a delta that newer backups build on into its
 * child, so they all still restore); a snapshot or replica is destroyed with its disks on its pool.
 */
import type { Db } from "../../db/prisma.js";
import { CairnError, ErrorCode } from "../../errors.js";
import { removeBackup } from "../../repository/retention.js";
import type { StoredRemotes } from "../stored-remotes.js";
import type { PoolRegistry } from "../../xapi/pool-registry.js";
import { VmOperations } from "../../xapi/vm-operations.js";
import { indexRemote, unlistBeforeRemoving } from "../backup/remote-backup-index.js";

interface RestorePointRow {
  id: string;
  kind: string;
  vmUuid: string;
  remoteId: string | null;
  path: string | null;
  poolId: string | null;
  objectUuid: string | null;
}

export async function removeRestorePoint(
  deps: { db: Db; registry: PoolRegistry; remotes: StoredRemotes },
  point: RestorePointRow,
): Promise<string[]> {
  if (point.kind === "XVA" || point.kind === "VHD_CHAIN") {
    if (!point.remoteId || !point.path) throw new CairnError(ErrorCode.Internal, `Restore point ${point.id} has no remote path.`);
    const row = await deps.remotes.get(point.remoteId);
    const remote = deps.remotes.open(row);
    try {
      await remote.open();
      const result = await removeBackup(remote, {
        vmUuid: point.vmUuid,
        metadataPath: point.path,
        onRemoving: unlistBeforeRemoving(deps.db, row.id),
      });
      await indexRemote(deps.db, row.id, remote, { vmUuid: point.vmUuid });
      const stillThere = await remote.stat(point.path).then(
        () => true,
        () => false,
      );
      if (stillThere) {
        // Failed closed: a file of the VM's backups could not be read, so nothing was deleted (the problem says which).
        throw new CairnError(
          ErrorCode.Unavailable,
          `The backup ${point.path} on ${row.name} was not removed: ${result.problems.join("; ")}`,
        );
      }
      return result.problems;
      // A held lock is a RepositoryError LOCKED, which the API answers as CONFLICT naming the holder.
    } finally {
      // The removal's outcome is decided (returned or thrown above); a close that fails cannot change it.
      await remote.close().catch(() => undefined);
    }
  }
  const connection = point.poolId ? deps.registry.get(point.poolId) : undefined;
  if (!connection || connection.status !== "CONNECTED") {
    throw new CairnError(ErrorCode.Unavailable, `The pool holding restore point ${point.id} is not connected: it cannot be removed now.`);
  }
  const ops = new VmOperations(connection);
  const vm = connection.records("VM").find((record) => record.uuid === point.objectUuid);
  if (vm) {
    if (!vm.is_a_snapshot && vm.power_state !== "Halted") {
      throw new CairnError(
        ErrorCode.Conflict,
        `The replica ${String(vm.name_label)} is ${String(vm.power_state)}: shut it down before removing it.`,
      );
    }
    await ops.destroySnapshot(vm.$ref);
  }
  await deps.db.restorePoint.delete({ where: { id: point.id } });
  return [];
}
