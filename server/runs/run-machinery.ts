/**
 * Starts the run machinery of one Cairn process, in order, and stops it in reverse:
 * queue (pg-boss) -> recovery (interrupt what dead processes left RUNNING, re-queue lost PENDING runs) -> worker -> sweeper.
 * Recovery runs before the worker takes work, so a job whose last run died is seen as not running. The schedule ticker
 * (server/scheduler) sits above: the composition root starts it on the machinery's launcher.
 */
import type { Db } from "../db/prisma.js";
import type { RunExecutor, RunRecord } from "../engine/run-executor.js";
import { createRunRecovery, type InterruptedHook } from "./run-recovery.js";
import { newWorkerId, startRunWorker, type RunWorker } from "./run-worker.js";
import type { EventBus } from "../events/event-bus.js";
import type { Logger } from "../log.js";
import { startRunQueue } from "./queue.js";
import { RunLauncher } from "./run-launcher.js";

export interface RunMachineryOptions {
  db: Db;
  events: EventBus;
  log: Logger;
  connectionString: string;
  executors: Partial<Record<RunRecord["kind"], RunExecutor>>;
  /** Runs executed at once by this process. @default 2 */
  concurrency?: number;
  /** Hooks called once per run interrupted by this process (crash cleanup). */
  onInterrupted?: InterruptedHook[];
  /** Tuning (defaults are the production values). */
  timing?: {
    /** @default 5000 */ heartbeatMs?: number;
    /** @default 30 */ heartbeatTimeoutSeconds?: number;
    /** @default 15000 */ sweepIntervalMs?: number;
    /** @default 0.5 */ pollingIntervalSeconds?: number;
    /** @default 10000 */ stopGraceMs?: number;
  };
  /** Set false for a process that only serves the API and takes no runs. @default true */
  worker?: boolean;
}

export interface RunMachinery {
  launcher: RunLauncher;
  workerId: string;
  worker?: RunWorker;
  /** Adds a hook called once per run this process interrupts; returns a remover. */
  onInterrupted(hook: InterruptedHook): () => void;
  /** Aborts running executors (their runs end INTERRUPTED), and stops the queue. */
  stop(): Promise<void>;
}

export async function startRunMachinery(options: RunMachineryOptions): Promise<RunMachinery> {
  const { db, events, log, timing = {} } = options;
  const workerId = newWorkerId();
  const machineryLog = log.child({ component: "runs", workerId });
  const queue = await startRunQueue({
    connectionString: options.connectionString,
    log: machineryLog,
    pollingIntervalSeconds: timing.pollingIntervalSeconds,
  });
  const stack: (() => Promise<void>)[] = [() => queue.stop()];
  const stopAll = async () => {
    for (const stop of stack.reverse())
      await stop().catch((error: unknown) => machineryLog.error({ err: error }, "error while stopping the run machinery"));
    stack.length = 0;
  };
  try {
    const launcher = new RunLauncher({ db, events, log: machineryLog, queue });
    const recovery = createRunRecovery({
      db,
      events,
      log: machineryLog,
      queue,
      workerId,
      heartbeatTimeoutSeconds: timing.heartbeatTimeoutSeconds,
      sweepIntervalMs: timing.sweepIntervalMs,
    });
    for (const hook of options.onInterrupted ?? []) recovery.onInterrupted(hook);
    await recovery.sweep({ startup: true });
    recovery.start();
    stack.push(() => recovery.stop());

    let worker: RunWorker | undefined;
    if (options.worker !== false) {
      worker = await startRunWorker({
        db,
        events,
        log: machineryLog,
        queue,
        executors: options.executors,
        workerId,
        concurrency: options.concurrency,
        heartbeatMs: timing.heartbeatMs,
        stopGraceMs: timing.stopGraceMs,
      });
      const started = worker;
      stack.push(() => started.stop());
    }

    machineryLog.info({ concurrency: options.concurrency ?? 2, worker: Boolean(worker) }, "run machinery started");
    return { launcher, workerId, worker, onInterrupted: (hook) => recovery.onInterrupted(hook), stop: stopAll };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
