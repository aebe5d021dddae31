/**
 * Runs whose process died never stay RUNNING, and PENDING runs never stay unqueued.
 *
 * - At start (before this process's worker takes work): a RUNNING run held by a worker on this host whose pid is not alive,
 *   or any RUNNING run whose heartbeat is older than `heartbeatTimeoutSeconds` (database clock), becomes INTERRUPTED, and so
 *   do its RUNNING tasks.
 * - Every `sweepIntervalMs`, the same checks run again: this is how a process notices that a worker on another machine died.
 * - PENDING runs whose queue job is gone or finished unclaimed are queued again.
 * - A RUNNING run held by this process's own worker that the worker is not executing was cut by a database outage (the
 *   worker stops its runs when the database goes away, and could not record their end): after the outage (`afterOutage`)
 *   at once, otherwise once its heartbeat is stale, it becomes INTERRUPTED and is cleaned up like a crashed one.
 *
 * Interrupting is a conditional UPDATE (still RUNNING, still held by the worker we saw), so when several processes sweep at
 * once exactly one of them interrupts a run and calls the `onInterrupted` hooks for it.
 */
import { hostname } from "node:os";
import { systemClock, type Clock } from "../domain/clock.js";
import type { Db } from "../db/prisma.js";
import type { EventBus } from "../events/event-bus.js";
import type { Logger } from "../log.js";
import type { RunQueue } from "./queue.js";
import { interruptRuns, interruptTasks, oldPendingRuns, staleRuns, type InterruptedRunRow } from "./runs.sql.js";
import { parseWorkerId, processExists } from "./run-worker.js";

export const INTERRUPTED_MESSAGE_BEFORE = "The Cairn process running it stopped (crash or kill) at ";
export const INTERRUPTED_MESSAGE_AFTER = "; its temporary files and snapshots are cleaned before the job runs again.";
const TASK_MESSAGE = "The Cairn process running this task stopped (crash or kill).";
export const OUTAGE_MESSAGE_BEFORE = "Cairn lost its database during the run (last recorded at ";
export const OUTAGE_MESSAGE_AFTER = "); its temporary files and snapshots are cleaned before the job runs again.";
const OUTAGE_TASK_MESSAGE = "Cairn lost its database during this task.";
const CRASH = {
  before: INTERRUPTED_MESSAGE_BEFORE,
  after: INTERRUPTED_MESSAGE_AFTER,
  task: TASK_MESSAGE,
  log: "run interrupted: its process stopped",
};
const OUTAGE = {
  before: OUTAGE_MESSAGE_BEFORE,
  after: OUTAGE_MESSAGE_AFTER,
  task: OUTAGE_TASK_MESSAGE,
  log: "run interrupted: the database went away during it",
};

/** Called once per interrupted run, by the process that interrupted it (cleanup of temporary files and snapshots). */
export type InterruptedHook = (run: InterruptedRunRow) => Promise<void> | void;

export interface RunRecoveryOptions {
  db: Db;
  events: EventBus;
  log: Logger;
  queue: RunQueue;
  /** This process's worker: its own runs are interrupted by its own sweeper only when it is not executing them. */
  workerId: string;
  /** Whether this process's worker is executing (or claiming) the run. @default always true (a process with no worker) */
  isRunningHere?: (runId: string) => boolean;
  /** @default 30 */
  heartbeatTimeoutSeconds?: number;
  /** @default 15000 */
  sweepIntervalMs?: number;
  /** PENDING runs older than this with no live queue job are queued again. @default 10 */
  pendingGraceSeconds?: number;
  /**
   * The periodic sweeper's timer. Ages (heartbeats, PENDING grace) are always measured on the database's clock, in SQL, so
   * that every process judges them alike. @default systemClock
   */
  clock?: Clock;
}

export interface RunRecovery {
  /** One pass of every check; returns the runs this call interrupted and how many PENDING runs it queued again. */
  sweep(options?: { startup?: boolean; afterOutage?: boolean }): Promise<{ interrupted: InterruptedRunRow[]; requeued: number }>;
  /** Adds a hook; returns a function that removes it. */
  onInterrupted(hook: InterruptedHook): () => void;
  /** Calls every hook for `run` (errors logged, not thrown): the cleanup of what a dead process left of a run. */
  cleanUp(run: InterruptedRunRow): Promise<void>;
  /** Starts the periodic sweeper. */
  start(): void;
  stop(): Promise<void>;
}

export function createRunRecovery(options: RunRecoveryOptions): RunRecovery {
  const { db, events, log, queue, workerId } = options;
  const heartbeatTimeout = options.heartbeatTimeoutSeconds ?? 30;
  const hooks = new Set<InterruptedHook>();
  const host = hostname();
  const clock = options.clock ?? systemClock;
  const isRunningHere = options.isRunningHere ?? (() => true);
  let cancelTimer: (() => void) | undefined;
  let current: Promise<unknown> = Promise.resolve();

  const deadOnThisHost = async () => {
    const running = await db.run.findMany({
      where: { status: "RUNNING", workerId: { startsWith: `${host}/` } },
      select: { id: true, workerId: true },
    });
    return running.filter((run) => run.workerId !== workerId && !pidAlive(run.workerId));
  };

  const cleanUp = async (run: InterruptedRunRow) => {
    for (const hook of hooks) {
      try {
        await hook(run);
      } catch (error) {
        log.error({ err: error, runId: run.id }, "an onInterrupted hook failed");
      }
    }
  };

  const interrupt = async (candidates: { id: string; workerId: string | null }[], why: typeof CRASH = CRASH) => {
    if (candidates.length === 0) return [];
    const rows = await db.$queryRaw<InterruptedRunRow[]>(interruptRuns(candidates, why.before, why.after));
    if (rows.length === 0) return rows;
    await db.$executeRaw(
      interruptTasks(
        rows.map((r) => r.id),
        why.task,
      ),
    );
    for (const run of rows) {
      log.warn({ runId: run.id, jobId: run.jobId, workerId: run.workerId, heartbeatAt: run.heartbeatAt }, why.log);
      // The run is INTERRUPTED already: a lost event must not keep the cleanup from running.
      await events
        .publish({ type: "run", runId: run.id, jobId: run.jobId })
        .catch((error: unknown) => log.warn({ err: error, runId: run.id }, "could not publish a run's interruption"));
      await cleanUp(run);
    }
    return rows;
  };

  const sweepOnce = async (startup: boolean, afterOutage: boolean) => {
    const staleAll = await db.$queryRaw<{ id: string; workerId: string | null }[]>(staleRuns(heartbeatTimeout));
    const stale = staleAll.filter((r) => r.workerId !== workerId);
    const dead = await deadOnThisHost();
    const byId = new Map([...stale, ...dead].map((r) => [r.id, r]));
    const interrupted = await interrupt([...byId.values()]);

    const own = afterOutage
      ? await db.run.findMany({ where: { status: "RUNNING", workerId }, select: { id: true, workerId: true } })
      : staleAll.filter((r) => r.workerId === workerId);
    interrupted.push(
      ...(await interrupt(
        own.filter((r) => !isRunningHere(r.id)),
        OUTAGE,
      )),
    );

    // At start every PENDING run is checked (this process may be the one that died before queueing it); later only runs
    // old enough that a live launcher has certainly queued them.
    const pending = await db.$queryRaw<{ id: string }[]>(oldPendingRuns(startup ? 0 : (options.pendingGraceSeconds ?? 10)));
    let requeued = 0;
    for (const run of pending) {
      if (await queue.requeue(run.id)) {
        requeued++;
        log.warn({ runId: run.id }, "queued a PENDING run again: its queue job was gone");
      }
    }
    return { interrupted, requeued };
  };

  const sweep: RunRecovery["sweep"] = (opts = {}) => {
    // Sweeps never overlap: a slow one (many runs, slow hooks) delays the next instead of racing it.
    const next = current.then(() => sweepOnce(opts.startup ?? false, opts.afterOutage ?? false));
    current = next.catch(() => undefined);
    return next;
  };

  return {
    sweep,
    cleanUp,
    onInterrupted(hook) {
      hooks.add(hook);
      return () => hooks.delete(hook);
    },
    start() {
      if (cancelTimer) return;
      const every = options.sweepIntervalMs ?? 15_000;
      // Re-armed when it fires (as an interval), not when the sweep ends: sweeps queue behind each other instead.
      const arm = () => {
        cancelTimer = clock.setTimeout(() => {
          arm();
          return sweep().catch((error: unknown) => log.error({ err: error }, "the run recovery sweep failed"));
        }, every);
      };
      arm();
    },
    async stop() {
      cancelTimer?.();
      cancelTimer = undefined;
      await current;
    },
  };
}

/** Whether the process named in a worker id on this host still exists (EPERM: it exists, owned by another user). */
function pidAlive(workerId: string | null): boolean {
  const parsed = workerId ? parseWorkerId(workerId) : undefined;
  if (!parsed) return true; // not ours to judge: the heartbeat check covers it
  return processExists(parsed.pid);
}
