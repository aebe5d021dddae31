/**
 * DISASTER_RECOVERY: snapshot; one `GET /export` of it (the job's compression) imported into every target SR at once (on the
 * source's pool or another), each import made a halted replica named "<vm> - <job> - <time>", tagged `cairn:replica`,
 * marked with the source VM, job, schedule, SR and time, its start blocked with a reason; a REPLICA restore point per
 * replica; then, per SR, the newest `copyRetention` replicas of this schedule are kept and older ones destroyed with their
 * disks (a replica found running, someone's failover, is left with a warning); the snapshot removed unless snapshotRetention
 * keeps it. Until its restore point is recorded, a replica carries `cairn:import:run` (set at import): a replica whose run was
 * interrupted before that is removed by the interrupted-run cleanup.
 */
import { messageOf } from "../../errors.js";
import { formatBackupTimestamp } from "../../repository/layout.js";
import { OtherConfigKey } from "../../xapi/other-config-keys.js";
import type { VmBackupContext, VmBackupResult } from "../backup/backup-context.js";
import { copyFullReplica } from "./replica-full-copy.js";
import { forgetReplicaPoints, recordReplicaPoint } from "./replica-restore-points.js";
import { replicaTimeLabel, resolveReplicaTargets, type ReplicaTarget } from "./replica-targets.js";
import { removeOrKeepRunSnapshot } from "../backup/snapshot-retention.js";
import { takeSnapshot } from "../backup/take-snapshot.js";

export async function disasterRecovery(ctx: VmBackupContext): Promise<VmBackupResult> {
  const targets = await resolveReplicaTargets(ctx);
  const snapshot = await takeSnapshot(ctx);
  try {
    if (ctx.signal.aborted) throw new Error(`stopped before the export: ${String(ctx.signal.reason)}`);
    const stamp = formatBackupTimestamp(ctx.timestamp);
    const { replicas, bytes } = await copyFullReplica(ctx, snapshot.ref, targets, (target) => ({
      name: `${ctx.vm.name} - ${ctx.jobName} - ${replicaTimeLabel(ctx.timestamp)}`,
      description: `Disaster recovery replica of ${ctx.vm.name} (${ctx.vm.uuid}) made by Cairn job ${ctx.jobName} at ${ctx.timestamp.toISOString()}. Its start is blocked: copy it, or remove the block for a failover.`,
      marks: {
        of: ctx.vm.uuid,
        job: ctx.jobId,
        schedule: ctx.schedule.id ?? "",
        sr: target.srUuid,
        datetime: stamp,
        mode: "DISASTER_RECOVERY",
      },
    }));
    const restorePointIds: string[] = [];
    for (const [target, replica] of replicas) {
      try {
        restorePointIds.push(await recordReplicaPoint(ctx, target, replica, snapshot.quiesced));
        // Recorded: no longer half-made for the interrupted-run cleanup.
        await target.replicas.ops.removeOtherConfig(replica.$ref, [OtherConfigKey.ImportRun]);
        await applyReplicaRetention(ctx, target);
      } catch (error) {
        await ctx.task.warn(`${target.name}: ${messageOf(error)}`);
      }
    }
    if (restorePointIds.length === 0) throw new Error("no target SR holds a replica after this run");
    return { restorePointIds, transferredBytes: bytes };
  } finally {
    await removeOrKeepRunSnapshot(ctx, snapshot.ref);
  }
}

/** Keeps the newest `copyRetention` DR replicas of this VM, job and schedule on the target SR; destroys the others with their disks. */
async function applyReplicaRetention(ctx: VmBackupContext, target: ReplicaTarget): Promise<void> {
  const keep = Math.max(1, ctx.schedule.copyRetention);
  await target.replicas.ops.sync();
  const replicas = target.replicas.replicas({
    of: ctx.vm.uuid,
    job: ctx.jobId,
    schedule: ctx.schedule.id ?? "",
    sr: target.srUuid,
    mode: "DISASTER_RECOVERY",
  });
  const doomed = replicas.slice(0, Math.max(0, replicas.length - keep));
  if (doomed.length === 0) return;
  await ctx.task.run("retention", `retention on ${target.name}: keep ${keep} replicas`, async (task) => {
    const removed: string[] = [];
    for (const replica of doomed) {
      if (replica.power_state !== "Halted") {
        await task.warn(
          `replica ${String(replica.name_label)} is ${String(replica.power_state)} (a failover?): left as it is; remove it by hand when it is no longer needed`,
        );
        continue;
      }
      await target.replicas.destroyVm(replica.$ref);
      removed.push(replica.uuid);
    }
    await forgetReplicaPoints(ctx, removed);
    return {
      removed: removed.length,
      datetimes: doomed.map((r) => (r.other_config as Record<string, string>)[OtherConfigKey.ReplicaDatetime]),
    };
  });
}
