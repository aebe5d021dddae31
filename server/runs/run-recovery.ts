/**
 * Runs whose process died never stay RUNNING, and PENDING runs never stay unqueued.
 *
 * - At start (before this process's worker takes work): a RUNNING run held by a worker on this host whose pid is not alive,
 *   or any RUNNING run whose heartbeat is older than `heartbeatTimeoutSeconds` (database clock), becomes INTERRUPTED, and so
 *   do its RUNNING tasks.
 * - Every `sweepIntervalMs`, the same checks run again: this is how a process notices that a worker on another machine died.
 * - PENDING runs whose queue job is gone or finished unclaimed are queued again.
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
import { parseWorkerId } from "./run-worker.js";

export const INTERRUPTED_MESSAGE_BEFORE = "The Cairn process running it stopped (crash or kill) at ";
export const INTERRUPTED_MESSAGE_AFTER = "; its temporary files and snapshots are cleaned before the job runs again.";
const TASK_MESSAGE = "The Cairn process running this task stopped (crash or kill).";

/** Called once per interrupted run, by the process that interrupted it (cleanup of temporary files and snapshots). */
export type InterruptedHook = (run: InterruptedRunRow) => Promise<void> | void;

export interface RunRecoveryOptions {
  db: Db;
  events: EventBus;
  log: Logger;
  queue: RunQueue;
  /** This process's worker: its own runs are never interrupted by its own sweeper. */
  workerId: string;
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
  sweep(options?: { startup?: boolean }): Promise<{ interrupted: InterruptedRunRow[]; requeued: number }>;
  /** Adds a hook; returns a function that removes it. */
  onInterrupted(hook: InterruptedHook): () => void;
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
  let cancelTimer: (() => void) | undefined;
  let current: Promise<unknown> = Promise.resolve();

  const deadOnThisHost = async () => {
    const running = await db.run.findMany({
      where: { status: "RUNNING", workerId: { startsWith: `${host}/` } },
      select: { id: true, workerId: true },
    });
    return running.filter((run) => run.workerId !== workerId && !pidAlive(run.workerId));
  };

  const interrupt = async (candidates: { id: string; workerId: string | null }[]) => {
    if (candidates.length === 0) return [];
    const rows = await db.$queryRaw<InterruptedRunRow[]>(interruptRuns(candidates, INTERRUPTED_MESSAGE_BEFORE, INTERRUPTED_MESSAGE_AFTER));
    if (rows.length === 0) return rows;
    await db.$executeRaw(
      interruptTasks(
        rows.map((r) => r.id),
        TASK_MESSAGE,
      ),
    );
    for (const run of rows) {
      log.warn(
        { runId: run.id, jobId: run.jobId, workerId: run.workerId, heartbeatAt: run.heartbeatAt },
        "run interrupted: its process stopped",
      );
      await events.publish({ type: "run", runId: run.id, jobId: run.jobId });
      for (const hook of hooks) {
        try {
          await hook(run);
        } catch (error) {
          log.error({ err: error, runId: run.id }, "an onInterrupted hook failed");
        }
      }
    }
    return rows;
  };

  const sweepOnce = async (startup: boolean) => {
    const stale = (await db.$queryRaw<{ id: string; workerId: string | null }[]>(staleRuns(heartbeatTimeout))).filter(
      (r) => r.workerId !== workerId,
    );
    const dead = await deadOnThisHost();
    const byId = new Map([...stale, ...dead].map((r) => [r.id, r]));
    const interrupted = await interrupt([...byId.values()]);

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
    const next = current.then(() => sweepOnce(opts.startup ?? false));
    current = next.catch(() => undefined);
    return next;
  };

  return {
    sweep,
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
  try {
    process.kill(parsed.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
