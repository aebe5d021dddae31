/**
 * The per-job health check: after a VM's backup succeeded, when the job's `healthCheckSrUuid` is set, the new restore point
 * (the first one recorded, when the backup went to several targets) is checked inside the backup run, as a `healthCheck`
 * task under the VM's task, as Xen Orchestra does. A failed check fails that task and adds a warning to the VM; the backup
 * itself stays a success (its data is written; the verdict FAILED is recorded on the restore point for everyone to see).
 */
import { messageOf } from "../../errors.js";
import type { VmBackupContext, VmBackupResult } from "../backup/backup-context.js";
import { checkRestorePointHealth, type HealthCheckDeps } from "./health-check.js";

export type PostBackupHealthCheck = (ctx: VmBackupContext, result: VmBackupResult) => Promise<void>;

export function createPostBackupHealthCheck(deps: HealthCheckDeps): PostBackupHealthCheck {
  return async (ctx, result) => {
    const srUuid = ctx.settings.healthCheckSrUuid;
    const pointId = result.restorePointIds[0];
    if (!srUuid || !pointId) return;
    const point = await ctx.db.restorePoint.findUnique({ where: { id: pointId } });
    if (!point) return;
    const task = await ctx.task.child("healthCheck", `health check of the new ${point.kind} restore point`, { vmUuid: ctx.vm.uuid });
    try {
      const verdict = await checkRestorePointHealth(deps, { point, srUuid, task, signal: ctx.signal, log: ctx.log, runId: ctx.runId });
      if (verdict.status === "FAILED") await ctx.task.warn(`health check failed: ${verdict.reason}`);
    } catch (error) {
      // Never a reason to back the VM up again (the pipeline's retry): the backup is done. A stop is the run's business.
      if (ctx.signal.aborted) throw error;
      await task.fail(error).catch(() => undefined); // already ended when the check failed after recording its verdict
      await ctx.task.warn(`health check not completed: ${messageOf(error)}`);
    }
  };
}

/** Wraps a pipeline so that a successful backup is then health-checked (when the context carries the check). */
export function withHealthCheck(
  pipeline: (ctx: VmBackupContext) => Promise<VmBackupResult>,
): (ctx: VmBackupContext) => Promise<VmBackupResult> {
  return async (ctx) => {
    const result = await pipeline(ctx);
    if (ctx.healthCheck) await ctx.healthCheck(ctx, result);
    return result;
  };
}
