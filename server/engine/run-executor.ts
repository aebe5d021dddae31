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
  /** Hands VMs of this run to any worker of the cluster (server/runs/vm-dispatch.ts); absent: the executor backs them up itself. */
  vms?: VmDispatcher;
}

/** How a VM executed by some worker ended, as its task row says. */
export interface VmEnd {
  status: "SUCCESS" | "FAILURE" | "SKIPPED" | "CANCELLED" | "INTERRUPTED";
  message: string | null;
  sizeBytes: number;
  /** The worker that executed it (null when none took it). */
  worker: string | null;
}

export interface VmDispatcher {
  /**
   * Has one VM of the run, whose task is `task`, backed up by whichever worker takes it (this one included), and resolves when
   * that task has ended: the caller holds one of the job's concurrency slots until then, whichever worker does the work.
   * `onProgress` gets the VM's progress (0..1) and bytes moved so far, as the executing worker records them.
   */
  run(task: TaskContext, vmUuid: string, index: number, onProgress: (fraction: number, bytes: number) => void): Promise<VmEnd>;
}

/** One VM of a job's run, executed by whichever worker took it from the queue; it ends `task` itself. */
export interface VmWorkContext {
  run: RunRecord;
  vmUuid: string;
  /** The VM's name when the run's worker selected it. */
  vmName: string;
  task: TaskContext;
  /** Aborted when the run is cancelled or no longer running, or this worker stops. */
  signal: AbortSignal;
  log: Logger;
}

export type VmExecutor = (context: VmWorkContext) => Promise<void>;

/**
 * What an executor ends with. SUCCESS/FAILURE/SKIPPED with a reason; a thrown error means FAILURE with its message, unless
 * the signal was aborted, in which case the machinery records CANCELLED (or FAILURE for a timeout) itself.
 */
export interface RunOutcome {
  status: "SUCCESS" | "FAILURE" | "SKIPPED";
  error?: string;
}

export type RunExecutor = (context: RunContext) => Promise<RunOutcome>;
