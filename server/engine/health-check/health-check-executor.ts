/**
 * Executes a HEALTH_CHECK run (`checkRestorePoint`): checks one restore point (health-check.ts) and ends SUCCESS (verdict
 * OK), FAILURE with the reason (verdict FAILED), or SKIPPED (the VM is tagged `cairn:no-health-check`). The SR is the one in
 * the run's params, else the job's `healthCheckSrUuid`, else chosen by health-check-sr.ts.
 */
import type { JobSettings } from "../../domain/job-settings.js";
import { checkRestorePointHealth, type HealthCheckDeps } from "./health-check.js";
import type { RunContext, RunExecutor, RunOutcome } from "../run-executor.js";

/** The parameters of a HEALTH_CHECK run (`Run.params`). */
export interface HealthCheckRunParams {
  restorePointId: string;
  /** The scratch SR; null: the job's healthCheckSrUuid, else the default choice. */
  srUuid: string | null;
  requestedBy: string | null;
}

export function parseHealthCheckParams(value: unknown): HealthCheckRunParams {
  const params = (value ?? {}) as Partial<HealthCheckRunParams>;
  if (typeof params.restorePointId !== "string" || params.restorePointId === "") {
    throw new Error(
      `This health check run has no restorePointId in its parameters (got ${JSON.stringify(value)?.slice(0, 200)}); launch the check again.`,
    );
  }
  return {
    restorePointId: params.restorePointId,
    srUuid: typeof params.srUuid === "string" && params.srUuid !== "" ? params.srUuid : null,
    requestedBy: typeof params.requestedBy === "string" ? params.requestedBy : null,
  };
}

export function createHealthCheckExecutor(deps: HealthCheckDeps): RunExecutor {
  return async (context: RunContext): Promise<RunOutcome> => {
    const params = parseHealthCheckParams(context.run.params);
    const point = await deps.db.restorePoint.findUnique({ where: { id: params.restorePointId } });
    if (!point)
      return {
        status: "FAILURE",
        error: `Restore point ${params.restorePointId} no longer exists (removed by retention?): nothing was checked.`,
      };
    context.report({ vmsTotal: 1, vmUuids: [point.vmUuid] });
    const job = point.jobId ? await deps.db.job.findUnique({ where: { id: point.jobId }, select: { settings: true } }) : null;
    const srUuid = params.srUuid ?? (job?.settings as Partial<JobSettings> | undefined)?.healthCheckSrUuid ?? null;
    const task = await context.root.child(
      "healthCheck",
      `health check of ${point.vmName} (${point.kind} of ${point.timestamp.toISOString()})`,
      { vmUuid: point.vmUuid },
    );
    const verdict = await checkRestorePointHealth(deps, {
      point,
      srUuid,
      task,
      signal: context.signal,
      log: context.log,
      runId: context.run.id,
    });
    if (verdict.status === "OK") {
      context.report({ vmsSucceeded: 1, vmsFailed: 0, progress: 1 });
      return { status: "SUCCESS" };
    }
    if (verdict.status === "SKIPPED") {
      context.report({ vmsSucceeded: 0, vmsFailed: 0, progress: 1 });
      return { status: "SKIPPED", error: `Skipped: ${verdict.reason}.` };
    }
    context.report({ vmsSucceeded: 0, vmsFailed: 1, progress: 1 });
    return { status: "FAILURE", error: `The health check of ${point.vmName} failed: ${verdict.reason}` };
  };
}
