/** The snapshot every backup mode starts with, tagged so that it can be found again (as a base, or as a leftover). */
import { formatBackupTimestamp } from "../../repository/layout.js";
import { OtherConfigKey } from "../../xapi/other-config-keys.js";
import type { SnapshotResult } from "../../xapi/vm-operations.js";
import type { VmBackupContext } from "./backup-context.js";

export async function takeSnapshot(ctx: VmBackupContext): Promise<SnapshotResult> {
  const vm = ctx.ops.findVm(ctx.vm.uuid);
  if (!vm)
    throw new Error(
      `VM ${ctx.vm.name} (${ctx.vm.uuid}) is no longer in pool ${ctx.connection.poolId}: it was removed or moved after the run started.`,
    );
  const stamp = formatBackupTimestamp(ctx.timestamp);
  return ctx.task.run("snapshot", `snapshot of ${ctx.vm.name}`, async (task) => {
    const result = await ctx.ops.snapshot(vm.$ref, snapshotName(ctx.vm.name, stamp, ctx.runId), {
      quiesce: ctx.settings.quiesce,
      // The run's tag first: the interrupted-run cleanup finds an untagged snapshot by its name, a tagged one by its run.
      firstTags: { [OtherConfigKey.CairnRun]: ctx.runId },
      otherConfig: {
        [OtherConfigKey.BackupJob]: ctx.jobId,
        [OtherConfigKey.BackupSchedule]: ctx.schedule.id ?? "",
        [OtherConfigKey.BackupVm]: ctx.vm.uuid,
        [OtherConfigKey.BackupDatetime]: stamp,
      },
    });
    if (ctx.settings.quiesce && !result.quiesced) {
      await task.warn(
        `A quiesced snapshot was not possible (${result.quiesceFallback}): took a normal (crash-consistent) snapshot instead.`,
      );
      await ctx.task.warn(`not quiesced: ${result.quiesceFallback}`);
    }
    return result;
  });
}

/**
 * The name of a run's snapshot. XAPI sets the name with the snapshot itself, the other_config tags only a moment later: a
 * process killed in between leaves a snapshot that only this name ties to its run (see {@link runSnapshotMark}).
 */
export function snapshotName(vmName: string, stamp: string, runId: string): string {
  return `[cairn] ${vmName} ${stamp} ${runSnapshotMark(runId)}`;
}

/** How a run's snapshot names end: `(run <first 8 characters of the run id>)`. */
export function runSnapshotMark(runId: string): string {
  return `(run ${runId.slice(0, 8)})`;
}
