/**
 * Whether an ended backup run is reported, by the job's `reportWhen`.
 *
 * - `ALWAYS`: every ended run (SUCCESS, FAILURE, SKIPPED, INTERRUPTED, CANCELLED).
 * - `FAILURE` (the default): every run an administrator must act on or at least know about:
 *   - FAILURE;
 *   - INTERRUPTED: the process died or was stopped during the run, so VMs may lack today's backup;
 *   - SKIPPED because the job was still busy with its previous run (`skipReason` JOB_BUSY): a backup that did not happen.
 *   Not reported: SUCCESS; CANCELLED (a user stopped it, and knows); SKIPPED because no VM matched the selection (a state of
 *   the job, not an event: it would repeat at every run; the run's history shows it).
 * - `NEVER`: nothing.
 */
import type { RunStatus, SkipReason } from "../db/generated/enums.js";
import type { ReportWhen } from "../domain/job-settings.js";

/** What the policy reads of a run: its status, and for a SKIPPED run why (the run's `error` is for people only). */
export interface ReportedRun {
  status: RunStatus;
  skipReason?: SkipReason | null;
}

export function shouldReport(reportWhen: ReportWhen, run: ReportedRun): boolean {
  if (reportWhen === "NEVER") return false;
  if (!ENDED.has(run.status)) return false;
  if (reportWhen === "ALWAYS") return true;
  return isTrouble(run);
}

/** An ended run that `FAILURE` reports. */
export function isTrouble(run: ReportedRun): boolean {
  if (run.status === "FAILURE" || run.status === "INTERRUPTED") return true;
  return run.status === "SKIPPED" && run.skipReason === "JOB_BUSY";
}

export const ENDED: ReadonlySet<RunStatus> = new Set<RunStatus>(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);
