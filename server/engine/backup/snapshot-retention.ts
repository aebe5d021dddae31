/**
 * Rolling snapshots: a job's snapshots of a VM, per schedule, keeping the newest N and destroying the older ones with their
 * disks. In DELTA mode the newest exported snapshot is always kept: it is the base of the next delta.
 */
import { OtherConfigKey } from "../../xapi/other-config-keys.js";
import type { XapiRecord } from "../../xapi/pool-connection.js";
import type { VmOperations } from "../../xapi/vm-operations.js";
import type { TaskContext } from "../task-context.js";
import { messageOf } from "../../errors.js";
import type { VmBackupContext } from "./backup-context.js";

export async function pruneJobSnapshots(
  ops: VmOperations,
  task: TaskContext,
  options: { vmUuid: string; jobId: string; scheduleId: string | null; keep: number; keepRefs?: string[] },
): Promise<string[]> {
  const match: Record<string, string> = { [OtherConfigKey.BackupJob]: options.jobId };
  if (options.scheduleId) match[OtherConfigKey.BackupSchedule] = options.scheduleId;
  const snapshots = ops.snapshotsOf(options.vmUuid, match);
  const doomed = snapshots.slice(0, Math.max(0, snapshots.length - options.keep)).filter((s) => !options.keepRefs?.includes(s.$ref));
  const removed: string[] = [];
  for (const snapshot of doomed) {
    await task.run("clean", `remove snapshot ${describe(snapshot)}`, async () => {
      await ops.destroySnapshot(snapshot.$ref);
      removed.push(snapshot.uuid);
      return { snapshotUuid: snapshot.uuid };
    });
  }
  return removed;
}

function describe(snapshot: XapiRecord): string {
  return `${String(snapshot.name_label ?? snapshot.uuid)} (${String(snapshot.snapshot_time ?? "")})`;
}

/**
 * After a FULL or DR run: the job's snapshot retention applied, and this run's snapshot removed unless it keeps it. A failure
 * is a warning: the next run retries.
 */
export async function removeOrKeepRunSnapshot(ctx: VmBackupContext, ref: string): Promise<void> {
  try {
    // Keeps the newest `snapshotRetention` (0: none, this one included); also removes what an interrupted run left.
    await pruneJobSnapshots(ctx.ops, ctx.task, {
      vmUuid: ctx.vm.uuid,
      jobId: ctx.jobId,
      scheduleId: ctx.schedule.id,
      keep: ctx.schedule.snapshotRetention,
    });
    if (ctx.ops.getRecord(ref) && ctx.schedule.snapshotRetention === 0) await ctx.ops.destroySnapshot(ref);
  } catch (error) {
    await ctx.task.warn(`the snapshot could not be removed (${messageOf(error)}): the next run will retry`);
  }
}

/** After a DELTA or CR run: the job's snapshot retention applied, never removing `baseRef`, the next delta's base. */
export async function pruneSnapshotsKeepingDeltaBase(ctx: VmBackupContext, baseRef: string): Promise<void> {
  await pruneJobSnapshots(ctx.ops, ctx.task, {
    vmUuid: ctx.vm.uuid,
    jobId: ctx.jobId,
    scheduleId: null,
    keep: Math.max(1, ctx.schedule.snapshotRetention),
    keepRefs: [baseRef],
  }).catch((error) => ctx.task.warn(`old snapshots not removed: ${messageOf(error)}`));
}

/** Removes the snapshot of a run that failed before it became a delta base; a failure is a warning (the next run retries). */
export async function destroyRunSnapshot(ctx: VmBackupContext, ref: string): Promise<void> {
  await ctx.ops
    .destroySnapshot(ref)
    .catch((error) => ctx.task.warn(`the snapshot could not be removed (${messageOf(error)}): the next run will retry`));
}
