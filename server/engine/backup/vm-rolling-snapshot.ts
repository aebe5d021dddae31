/** ROLLING_SNAPSHOT: snapshot the VM on its own SR, keep the newest `snapshotRetention` of this schedule, record them. */
import type { VmBackupContext, VmBackupResult } from "./backup-context.js";
import { pruneJobSnapshots } from "./snapshot-retention.js";
import { takeSnapshot } from "./take-snapshot.js";

export async function rollingSnapshot(ctx: VmBackupContext): Promise<VmBackupResult> {
  const snapshot = await takeSnapshot(ctx);
  const record = ctx.ops.getRecord(snapshot.ref);
  const disks = record ? ctx.ops.disks(record) : [];
  const srUuid = disks[0] ? (ctx.ops.getRecord(disks[0].srRef)?.uuid ?? null) : null;
  const point = await ctx.db.restorePoint.create({
    data: {
      kind: "SNAPSHOT",
      vmUuid: ctx.vm.uuid,
      vmName: ctx.vm.name,
      timestamp: ctx.timestamp,
      sizeBytes: BigInt(disks.reduce((sum, d) => sum + d.virtualSize, 0)),
      poolId: ctx.connection.poolId,
      srUuid,
      objectUuid: snapshot.uuid,
      jobId: ctx.jobId,
      scheduleId: ctx.schedule.id,
      runId: ctx.runId,
      quiesced: snapshot.quiesced,
      disks: disks.map((d) => ({ id: d.vdiUuid, name: d.name, virtualSize: d.virtualSize })),
    },
  });
  const removed = await pruneJobSnapshots(ctx.ops, ctx.task, {
    vmUuid: ctx.vm.uuid,
    jobId: ctx.jobId,
    scheduleId: ctx.schedule.id,
    keep: Math.max(1, ctx.schedule.snapshotRetention),
  });
  if (removed.length > 0) await ctx.db.restorePoint.deleteMany({ where: { kind: "SNAPSHOT", objectUuid: { in: removed } } });
  return { restorePointIds: [point.id], transferredBytes: 0 };
}
