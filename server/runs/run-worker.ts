/**
 * The worker of one Cairn process: takes runs from the queue, claims each one in the Run row, keeps it alive (heartbeat),
 * stops it when asked (cancel, timeout, shutdown) and ends it with the status the executor's outcome gives.
 *
 * Claiming is a conditional UPDATE (PENDING -> RUNNING, workerId): a queue job delivered for a cancelled or already claimed
 * run does nothing, so whatever the queue does, a run executes at most once. Every later write of the run is conditional on
 * this worker still holding it: a run that a sweeper declared INTERRUPTED (heartbeat lost) is not overwritten.
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { Db } from "../db/prisma.js";
import type { SkipReason } from "../db/generated/enums.js";
import type { EventBus } from "../events/event-bus.js";
import type { Logger } from "../log.js";
import type { RunQueue } from "./queue.js";
import { claimRun, endRun, heartbeatRun, interruptTasks, type InterruptedRunRow } from "./runs.sql.js";
import type { RunExecutor, RunOutcome, RunRecord, VmDispatcher } from "../engine/run-executor.js";
import { type RecordedTask, RunReporter, TaskRecorder } from "./task-recorder.js";
import { messageOf } from "../errors.js";

/**
 * Why a run's signal was aborted: `signal.reason` is one of these strings. "database": the database went away, so nothing
 * of the run can be recorded any more; the run is left RUNNING and the recovery marks it INTERRUPTED (and cleans up after
 * it) once the database is back.
 */
export type RunAbortReason = "cancelled" | "timeout" | "shutdown" | "lost" | "database";

export const SHUTDOWN_MESSAGE = "Cairn was stopped during the run";
export const CANCELLED_MESSAGE = "Cancelled by a user.";
export const LOST_MESSAGE = "This worker lost the run: its heartbeat was not recorded in time and another process interrupted it.";

/** `${hostname}/${pid}/${random}`: recovery reads the host and pid back to tell a dead worker from a live one. */
export function newWorkerId(): string {
  return `${hostname()}/${process.pid}/${randomBytes(4).toString("hex")}`;
}

export function parseWorkerId(workerId: string): { host: string; pid: number } | undefined {
  const match = /^(.*)\/(\d+)\/[^/]+$/.exec(workerId);
  return match ? { host: match[1], pid: Number(match[2]) } : undefined;
}

/** Whether a process of this host with that pid exists (EPERM: it does, owned by another user). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface RunWorkerOptions {
  db: Db;
  events: EventBus;
  log: Logger;
  queue: RunQueue;
  executors: Partial<Record<RunRecord["kind"], RunExecutor>>;
  /** @default newWorkerId() */
  workerId?: string;
  /** Runs executed at once by this process. @default 2 */
  concurrency?: number;
  /** @default 5000 */
  heartbeatMs?: number;
  /** How long stop() waits for executors to honour the abort before it ends their runs anyway. @default 10000 */
  stopGraceMs?: number;
  /**
   * Gives each run a dispatcher of its VMs to every worker (vm-dispatch.ts); absent: executors back up their VMs here.
   * `onLostWorker` is to be called with the id of a worker that died while backing up one of the run's VMs.
   */
  vms?: (runId: string, signal: AbortSignal, log: Logger, onLostWorker: (workerId: string) => void) => VmDispatcher;
  /**
   * Cleans what a dead VM worker left of a run (its snapshot, temporary files, locks) once the run has ended: the same
   * cleanup as after a crash (run-recovery.ts), given the dead worker's id. Only after the end, because the cleanup takes
   * the remote locks the run's other VMs hold while they are written.
   */
  cleanAfterLostWorker?: (run: InterruptedRunRow) => Promise<void>;
}

export interface RunWorker {
  readonly workerId: string;
  /** Ids of the runs this worker is executing now, or claiming. */
  running(): string[];
  /** Aborts every run executing now with reason "database" (the database went away); returns their ids. */
  abortForOutage(): string[];
  /**
   * Resolves when every run aborted by `abortForOutage` has returned (its executor honoured the signal), or after
   * `timeoutMs`; resolves with the ids of those still executing.
   */
  outageSettled(timeoutMs: number): Promise<string[]>;
  /**
   * Stops taking runs, aborts the running ones (reason "shutdown") and ends them INTERRUPTED (SHUTDOWN_MESSAGE); resolves when
   * no run of this worker is RUNNING any more.
   */
  stop(): Promise<void>;
}

interface ActiveRun {
  controller: AbortController;
  done: Promise<void>;
  release(): void;
}

export async function startRunWorker(options: RunWorkerOptions): Promise<RunWorker> {
  const { db, events, log, queue } = options;
  const workerId = options.workerId ?? newWorkerId();
  const heartbeatMs = options.heartbeatMs ?? 5000;
  const active = new Map<string, ActiveRun>();
  /** Runs between the claim's UPDATE and their entry in `active`: RUNNING in the database and ours, not yet visible above. */
  const claiming = new Set<string>();
  let stopping = false;

  // Cancel requests arrive as `run` events from any process; the heartbeat also reads the flag, in case an event was lost.
  const subscription = new AbortController();
  const watchCancels = (async () => {
    for await (const event of events.subscribe(subscription.signal, (e) => e.type === "run" && active.has(e.runId))) {
      const row = await db.run.findUnique({ where: { id: event.runId }, select: { cancelRequestedAt: true } }).catch((error: unknown) => {
        log.warn({ err: error, runId: event.runId }, "could not read a run's cancel flag");
        return null;
      });
      if (row?.cancelRequestedAt) active.get(event.runId)?.controller.abort("cancelled" satisfies RunAbortReason);
    }
  })();

  const execute = async (runId: string): Promise<void> => {
    if (stopping) return; // left PENDING: the queue job ends, and a sweeper of a live process queues the run again
    claiming.add(runId);
    let claimed: { id: string }[];
    try {
      claimed = await db.$queryRaw<{ id: string }[]>(claimRun(runId, workerId));
    } catch (error) {
      // Left PENDING (a sweeper queues it again), or claimed with the answer lost: then it is RUNNING, ours and not executing,
      // and the recovery interrupts it.
      claiming.delete(runId);
      log.warn({ err: error, runId }, "could not claim a run");
      return;
    }
    if (claimed.length === 0) {
      claiming.delete(runId);
      log.debug({ runId }, "run not claimed: cancelled, or claimed by another worker");
      return;
    }
    const controller = new AbortController();
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    active.set(runId, { controller, done, release });
    claiming.delete(runId);
    try {
      // `released`: stop() gave up on an executor that ignores its signal; the queue job must end for the queue to stop.
      await Promise.race([runClaimed(runId, controller), released]);
    } catch (error) {
      log.error({ err: error, runId }, "the run machinery failed while ending a run");
    } finally {
      active.delete(runId);
      finish();
    }
  };

  const runClaimed = async (runId: string, controller: AbortController): Promise<void> => {
    const row = await db.run.findUniqueOrThrow({ where: { id: runId }, include: { job: { select: { name: true, settings: true } } } });
    const runLog = log.child({ runId, jobId: row.jobId });
    await events.publish({ type: "run", runId, jobId: row.jobId });
    const record: RunRecord = {
      id: row.id,
      kind: row.kind,
      jobId: row.jobId,
      scheduleId: row.scheduleId,
      trigger: row.trigger,
      params: row.params,
    };
    const recorder = new TaskRecorder({ db, events, log: runLog, runId });
    const reporter = new RunReporter({ db, events, log: runLog, runId, jobId: row.jobId });
    const signal = controller.signal;

    const heartbeat = setInterval(() => {
      db.$queryRaw<{ cancelRequestedAt: Date | null }[]>(heartbeatRun(runId, workerId))
        .then((rows) => {
          if (rows.length === 0) controller.abort("lost" satisfies RunAbortReason);
          else if (rows[0].cancelRequestedAt) controller.abort("cancelled" satisfies RunAbortReason);
        })
        .catch((error: unknown) => runLog.warn({ err: error }, "could not record the run's heartbeat"));
    }, heartbeatMs);
    const timeoutSeconds = timeoutOf(row.job?.settings);
    const timeout = timeoutSeconds
      ? setTimeout(() => controller.abort("timeout" satisfies RunAbortReason), timeoutSeconds * 1000)
      : undefined;
    // A cancel that came between the claim and now.
    if (row.cancelRequestedAt) controller.abort("cancelled" satisfies RunAbortReason);

    let outcome: RunOutcome;
    let root: RecordedTask | undefined;
    let runProgress = 0;
    let runBytes = 0;
    let lostWorker: string | undefined;
    try {
      root = (await recorder.root("run", row.job?.name ?? row.kind.toLowerCase().replace("_", " "))) as RecordedTask;
      const executor = options.executors[row.kind];
      if (!executor) throw new Error(`This Cairn process has no executor for ${row.kind} runs.`);
      outcome = await executor({
        run: record,
        root,
        signal,
        log: runLog,
        report: (totals) => {
          reporter.report(totals);
          // The run's root task says what the run row says: one progress, the same bytes, wherever it is read.
          if (totals.progress !== undefined) runProgress = Math.min(0.99, Math.max(runProgress, totals.progress));
          if (totals.transferredBytes !== undefined) runBytes = Math.max(runBytes, totals.transferredBytes);
          if (totals.progress !== undefined || totals.transferredBytes !== undefined) root?.progress(runProgress, runBytes);
        },
        vms: options.vms?.(runId, signal, runLog, (lost) => (lostWorker ??= lost)),
      });
    } catch (error) {
      outcome = { status: "FAILURE", error: root ? messageOf(error) : `Could not record the run's task tree: ${messageOf(error)}` };
    } finally {
      clearInterval(heartbeat);
      clearTimeout(timeout);
    }

    if (signal.aborted && signal.reason === ("database" satisfies RunAbortReason)) {
      // Nothing more can be recorded: the run stays RUNNING, ours, and no longer executing, which is what the recovery looks
      // for when the database is back (run-recovery.ts): it marks it INTERRUPTED and cleans what it left, as after a crash.
      await reporter.close();
      await recorder.flush();
      runLog.warn("run stopped: the database went away; it is marked INTERRUPTED and cleaned up once the database is back");
      return;
    }
    const final = finalStatus(outcome, signal, timeoutSeconds);
    await reporter.close();
    await recorder.flush();
    // Tasks the executor left open end with the run (children first); the root task mirrors the run.
    const message = final.error ?? "The run ended before this task did.";
    const openStatus = final.status === "SUCCESS" || final.status === "SKIPPED" ? "INTERRUPTED" : final.status;
    await recorder.endOpen(openStatus, message, root);
    if (root && !root.ended) {
      if (final.status === "SUCCESS") await root.succeed();
      else if (final.status === "FAILURE") await root.fail(message);
      else await root.end(final.status, message);
    }
    const ended = await db.$queryRaw<{ id: string }[]>(
      endRun(runId, workerId, final.status, final.error ?? null, final.skipReason ?? null),
    );
    if (ended.length === 0)
      runLog.warn({ status: final.status }, "the run was no longer held by this worker when it ended; its status was left as found");
    else runLog.info({ status: final.status, error: final.error }, "run ended");
    await events.publish({ type: "run", runId, jobId: row.jobId });
    if (lostWorker && ended.length > 0 && options.cleanAfterLostWorker) {
      runLog.info({ lostWorker }, "cleaning what the dead worker left of this run");
      await options
        .cleanAfterLostWorker({ id: runId, jobId: row.jobId, kind: row.kind, workerId: lostWorker, heartbeatAt: null, startedAt: null })
        .catch((error: unknown) => runLog.error({ err: error }, "could not clean what a dead worker left of this run"));
    }
  };

  const concurrency = Math.max(1, options.concurrency ?? 2);
  for (let i = 0; i < concurrency; i++) await queue.work(execute);

  return {
    workerId,
    running: () => [...active.keys(), ...claiming],
    abortForOutage() {
      const aborted: string[] = [];
      for (const [runId, run] of active) {
        if (run.controller.signal.aborted) continue;
        run.controller.abort("database" satisfies RunAbortReason);
        aborted.push(runId);
      }
      return aborted;
    },
    async outageSettled(timeoutMs) {
      const cut = () => [...active].filter(([, run]) => run.controller.signal.reason === ("database" satisfies RunAbortReason));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(cut().map(([, run]) => run.done)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
      ]);
      clearTimeout(timer);
      return cut().map(([runId]) => runId);
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      await queue.stopWorking();
      for (const run of active.values()) run.controller.abort("shutdown" satisfies RunAbortReason);
      const grace = options.stopGraceMs ?? 10_000;
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = await Promise.race([
        Promise.all([...active.values()].map((r) => r.done)).then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), grace))),
      ]);
      clearTimeout(timer);
      if (gaveUp) {
        // An executor ignored its signal: its run must not stay RUNNING after a clean stop.
        for (const [runId, run] of active) {
          const rows = await db.$queryRaw<{ id: string; jobId: string | null }[]>(endRun(runId, workerId, "INTERRUPTED", SHUTDOWN_MESSAGE));
          if (rows.length > 0) {
            await db.$executeRaw(interruptTasks([runId], SHUTDOWN_MESSAGE));
            await events.publish({ type: "run", runId, jobId: rows[0].jobId });
          }
          log.warn({ runId }, "an executor did not stop within the grace period; its run was marked INTERRUPTED");
          run.release();
        }
      }
      subscription.abort();
      await watchCancels;
    },
  };
}

function timeoutOf(settings: unknown): number | undefined {
  const value = (settings as { timeoutSeconds?: unknown } | null | undefined)?.timeoutSeconds;
  return typeof value === "number" && value > 0 ? value : undefined;
}

function finalStatus(
  outcome: RunOutcome,
  signal: AbortSignal,
  timeoutSeconds: number | undefined,
): { status: "SUCCESS" | "FAILURE" | "SKIPPED" | "CANCELLED" | "INTERRUPTED"; error?: string; skipReason?: SkipReason } {
  if (signal.aborted) {
    const reason = signal.reason as RunAbortReason;
    if (reason === "cancelled") return { status: "CANCELLED", error: CANCELLED_MESSAGE };
    if (reason === "timeout")
      return { status: "FAILURE", error: `The run timed out after ${timeoutSeconds} s (the job's timeout) and was stopped.` };
    if (reason === "shutdown") return { status: "INTERRUPTED", error: SHUTDOWN_MESSAGE };
    return { status: "INTERRUPTED", error: LOST_MESSAGE };
  }
  if (outcome.status === "SUCCESS") return { status: "SUCCESS" };
  // An executor skips when it finds nothing to do (run-executor.ts); a busy job's skip is recorded by run-launcher.ts.
  if (outcome.status === "SKIPPED") return { status: "SKIPPED", error: outcome.error, skipReason: "NOTHING_SELECTED" };
  return { status: outcome.status, error: outcome.error ?? (outcome.status === "FAILURE" ? "The run failed." : undefined) };
}
