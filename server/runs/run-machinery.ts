/**
 * Starts the run machinery of one Cairn process, in order, and stops it in reverse:
 * queue (pg-boss) -> recovery (interrupt what dead processes left RUNNING, re-queue lost PENDING runs) -> worker -> sweeper.
 * Recovery runs before the worker takes work, so a job whose last run died is seen as not running. The schedule ticker
 * (server/scheduler) sits above: the composition root starts it on the machinery's launcher.
 *
 * When the database goes away (`database`), the runs executing here are stopped: none of their progress, tasks or end can be
 * recorded, and a backup whose restore point cannot be recorded is no backup. When it is back, they are marked INTERRUPTED
 * and the `onInterrupted` hooks clean up after them, as after a crash; the next run of their job starts clean.
 */
import type { DatabaseAvailability } from "../db/database-supervisor.js";
import type { Db } from "../db/prisma.js";
import type { RunExecutor, RunRecord, VmExecutor } from "../engine/run-executor.js";
import { createRunRecovery, type InterruptedHook } from "./run-recovery.js";
import { newWorkerId, startRunWorker, type RunWorker, type RunWorkerOptions } from "./run-worker.js";
import type { EventBus } from "../events/event-bus.js";
import type { Logger } from "../log.js";
import { startRunQueue } from "./queue.js";
import { RunLauncher } from "./run-launcher.js";
import { createVmDispatcher, holdLivenessLock, startVmWorker } from "./vm-dispatch.js";

export interface RunMachineryOptions {
  db: Db;
  events: EventBus;
  log: Logger;
  connectionString: string;
  /** The database's availability: runs are stopped while it is away and recovered when it is back. */
  database?: DatabaseAvailability;
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
    /** After an outage, how long the runs it cut may take to stop before the recovery goes on without them. @default 60000 */
    outageGraceMs?: number;
  };
  /** Set false for a process that takes no runs. @default true */
  worker?: boolean;
  /**
   * Set false, with `worker: false`, for a process that only serves the API (CAIRN_ROLE=api): it queues runs, and leaves the
   * recovery sweeps (and their cleanup hooks, which need pool connections) to the workers. @default true
   */
  recovery?: boolean;
  /**
   * Backs up one VM of a run held by any worker: with it, the VMs of every run are spread over the workers of the cluster
   * (vm-dispatch.ts), `vmSlots` at once on this process. Absent: each run backs up its VMs in the process that holds it.
   */
  vmExecutor?: VmExecutor;
  /** VMs this process backs up at once, whatever their runs. @default 4 */
  vmSlots?: number;
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
    let worker: RunWorker | undefined;
    if (options.worker === false && options.recovery === false) {
      machineryLog.info("run machinery started: this process queues runs and executes none (CAIRN_ROLE=api)");
      return { launcher, workerId, onInterrupted: () => () => undefined, stop: stopAll };
    }
    const recovery = createRunRecovery({
      isRunningHere: (runId) => worker?.running().includes(runId) ?? false,
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

    if (options.worker === false) {
      machineryLog.info("run machinery started: this process sweeps and takes no runs");
      return { launcher, workerId, onInterrupted: (hook) => recovery.onInterrupted(hook), stop: stopAll };
    }
    let vms: RunWorkerOptions["vms"];
    if (options.vmExecutor) {
      // Held until this process ends: the runs' workers read it to tell a dead VM worker from a slow one.
      const liveness = await holdLivenessLock(options.connectionString, workerId, machineryLog);
      stack.push(() => liveness.release());
      const vmWorker = await startVmWorker({
        db,
        events,
        log: machineryLog,
        queue,
        executor: options.vmExecutor,
        workerId,
        slots: options.vmSlots ?? 4,
      });
      stack.push(() => vmWorker.stop(timing.stopGraceMs));
      vms = (runId, signal, runLog, onLostWorker) => createVmDispatcher({ db, events, queue, log: runLog, runId, signal, onLostWorker });
    }
    const started = await startRunWorker({
      db,
      events,
      log: machineryLog,
      queue,
      executors: options.executors,
      workerId,
      concurrency: options.concurrency,
      heartbeatMs: timing.heartbeatMs,
      stopGraceMs: timing.stopGraceMs,
      vms,
      cleanAfterLostWorker: (run) => recovery.cleanUp(run),
    });
    worker = started;
    stack.push(() => started.stop());

    if (options.database) {
      const database = options.database;
      let recovering: Promise<void> = Promise.resolve();
      const offUnavailable = database.onUnavailable(() => {
        const cut = worker?.abortForOutage() ?? [];
        if (cut.length > 0) machineryLog.warn({ runIds: cut }, "stopping the runs in progress: the database went away");
      });
      const offAvailable = database.onAvailable(() => {
        recovering = recovering.then(async () => {
          const still = (await worker?.outageSettled(timing.outageGraceMs ?? 60_000)) ?? [];
          if (still.length > 0)
            machineryLog.warn({ runIds: still }, "runs cut by the database outage have not stopped yet; they are recovered once stale");
          const { interrupted } = await recovery.sweep({ afterOutage: true });
          machineryLog.info({ interrupted: interrupted.map((r) => r.id) }, "recovered the runs cut by the database outage");
        });
        recovering = recovering.catch((error: unknown) =>
          machineryLog.error({ err: error }, "could not recover the runs cut by the database outage; the periodic sweep retries"),
        );
      });
      stack.push(async () => {
        offUnavailable();
        offAvailable();
        await recovering;
      });
    }

    machineryLog.info(
      { concurrency: options.concurrency ?? 2, vmSlots: options.vmExecutor ? (options.vmSlots ?? 4) : undefined },
      "run machinery started",
    );
    return { launcher, workerId, worker, onInterrupted: (hook) => recovery.onInterrupted(hook), stop: stopAll };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
