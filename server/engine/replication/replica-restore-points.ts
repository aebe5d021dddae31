/**
 * REPLICA restore points: one row per replica VM (DR) or replica snapshot (CR), with the pool, the SR and the object's uuid.
 * Rows follow the objects: a replica destroyed by retention loses its row in the same step.
 */
import type { XapiRecord } from "../../xapi/pool-connection.js";
import type { VmBackupContext } from "../backup/backup-context.js";
import type { ReplicaTarget } from "./replica-targets.js";

export async function recordReplicaPoint(
  ctx: VmBackupContext,
  target: ReplicaTarget,
  object: XapiRecord,
  quiesced: boolean,
): Promise<string> {
  await target.replicas.ops.sync();
  const disks = target.replicas.ops.disks(target.replicas.ops.getRecord(object.$ref) ?? object);
  const point = await ctx.db.restorePoint.create({
    data: {
      kind: "REPLICA",
      vmUuid: ctx.vm.uuid,
      vmName: ctx.vm.name,
      timestamp: ctx.timestamp,
      sizeBytes: BigInt(disks.reduce((sum, d) => sum + d.virtualSize, 0)),
      poolId: target.poolId,
      srUuid: target.srUuid,
      objectUuid: object.uuid,
      jobId: ctx.jobId,
      scheduleId: ctx.schedule.id,
      runId: ctx.runId,
      quiesced,
      disks: disks.map((d) => ({ id: d.vdiUuid, name: d.name, virtualSize: d.virtualSize })),
    },
    select: { id: true },
  });
  return point.id;
}

/** Deletes the REPLICA rows of objects that no longer exist. */
export async function forgetReplicaPoints(ctx: VmBackupContext, objectUuids: string[]): Promise<void> {
  if (objectUuids.length === 0) return;
  await ctx.db.restorePoint.deleteMany({ where: { kind: "REPLICA", objectUuid: { in: objectUuids } } });
}
