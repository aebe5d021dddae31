/**
 * The contract between the run machinery (queue, claim, heartbeat, cancel, recovery: server/scheduler and
 * server/runs/run-worker.ts) and what a run does (backup modes, restore, health check). The machinery claims a run, builds
 * its root task and abort signal, calls the executor for the run's kind, and ends the run with the status derived from what
 * the executor returns or throws. A job's runs are all BACKUP runs, whatever the job's mode (a VERIFY job's too: its mode
 * picks the work, see backup-executor.ts); RESTORE, HEALTH_CHECK and VERIFY runs are the one-off operations.
 */
import type { Logger } from "../log.js";
import type { TaskContext } from "./task-context.js";

export interface RunRecord {
  id: string;
  kind: "BACKUP" | "RESTORE" | "HEALTH_CHECK" | "VERIFY";
  jobId: string | null;
  scheduleId: string | null;
  trigger: "SCHEDULE" | "MANUAL" | "API";
  params: unknown;
}

export interface RunTotals {
  /** VMs the run selected (set as soon as they are known). */
  vmsTotal?: number;
  vmsSucceeded?: number;
  vmsFailed?: number;
  /** Bytes moved so far (monotonic). */
  transferredBytes?: number;
  /** 0..1 */
  progress?: number;
  /** The VMs selected, recorded on the run. */
  vmUuids?: string[];
}

export interface RunContext {
  run: RunRecord;
  /** The run's root task: the executor hangs its tree (VMs, snapshots, exports...) under it. */
  root: TaskContext;
  /** Aborted when the run is cancelled (cancelRun), times out, or the process shuts down. `signal.reason` says which. */
  signal: AbortSignal;
  log: Logger;
  /** Updates the run's totals (coalesced like task progress); never lowers transferredBytes. */
  report(totals: RunTotals): void;
}

/**
 * What an executor ends with. SUCCESS/FAILURE/SKIPPED with a reason; a thrown error means FAILURE with its message, unless
 * the signal was aborted, in which case the machinery records CANCELLED (or FAILURE for a timeout) itself.
 */
export interface RunOutcome {
  status: "SUCCESS" | "FAILURE" | "SKIPPED";
  error?: string;
}

export type RunExecutor = (context: RunContext) => Promise<RunOutcome>;
