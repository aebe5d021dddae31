/**
 * Whether an ended backup run is reported, by the job's `reportWhen`.
 *
 * - `ALWAYS`: every ended run (SUCCESS, FAILURE, SKIPPED, INTERRUPTED, CANCELLED).
 * - `FAILURE` (the default): every run an administrator must act on or at least know about:
 *   - FAILURE;
 *   - INTERRUPTED: the process died or was stopped during the run, so VMs may lack today's backup;
 *   - SKIPPED because the job was still busy with its previous run (BUSY_JOB_MESSAGE): a backup that did not happen.
 *   Not reported: SUCCESS; CANCELLED (a user stopped it, and knows); SKIPPED because no VM matched the selection (a state of
 *   the job, not an event: it would repeat at every run; the run's history shows it).
 * - `NEVER`: nothing.
 */
import type { RunStatus } from "../db/generated/enums.js";
import { BUSY_JOB_MESSAGE } from "../runs/run-launcher.js";
import type { ReportWhen } from "../domain/job-settings.js";

export function shouldReport(reportWhen: ReportWhen, run: { status: RunStatus; error: string | null }): boolean {
  if (reportWhen === "NEVER") return false;
  if (!ENDED.has(run.status)) return false;
  if (reportWhen === "ALWAYS") return true;
  return isTrouble(run);
}

/** An ended run that `FAILURE` reports. */
export function isTrouble(run: { status: RunStatus; error: string | null }): boolean {
  if (run.status === "FAILURE" || run.status === "INTERRUPTED") return true;
  return run.status === "SKIPPED" && (run.error ?? "").includes(BUSY_JOB_MESSAGE);
}

export const ENDED: ReadonlySet<RunStatus> = new Set<RunStatus>(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);
