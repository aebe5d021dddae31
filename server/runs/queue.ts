/**
 * The run queue: pg-boss 10 on Cairn's own database, in its own schema ("pgboss"). A queued job carries only a run id, and
 * its pg-boss id IS the run id, so enqueueing a run twice is a no-op (pg-boss inserts with ON CONFLICT DO NOTHING on the id).
 * The Run row stays the truth: a worker claims the run with a conditional UPDATE before doing anything (run-worker.ts), so
 * a job delivered twice, or delivered for a cancelled run, does nothing.
 *
 * pg-boss's own cron is not used: schedules fire from schedule-ticker.ts, which writes the Run row (with its unique
 * (scheduleId, scheduledFor)) in the same step, skips a busy job visibly (a SKIPPED run), and reads schedules from our tables
 * instead of keeping a second copy of them in pg-boss's.
 */
import { setTimeout as delay } from "node:timers/promises";
import PgBoss from "pg-boss";
import { isDatabaseUnavailable } from "../db/database-unavailable.js";
import type { Logger } from "../log.js";

export const RUN_QUEUE = "cairn-runs";
/** One VM of a running job, taken by any worker (vm-dispatch.ts); its pg-boss id is the VM's task id. */
export const VM_QUEUE = "cairn-vms";
export const QUEUE_SCHEMA = "pgboss";

export interface RunJobData {
  runId: string;
}

export interface VmJobData {
  runId: string;
  taskId: string;
  vmUuid: string;
  /** The VM's index in the run's selection: where its subtree's task positions start. */
  index: number;
}

export interface RunQueueOptions {
  connectionString: string;
  log: Logger;
  /** How often an idle worker polls for a new run. Launches in this process wake local workers at once. @default 0.5 */
  pollingIntervalSeconds?: number;
  /** Connections pg-boss may open. @default 4 */
  maxConnections?: number;
}

export interface RunQueue {
  readonly boss: PgBoss;
  readonly pollingIntervalSeconds: number;
  /** Queues a run (idempotent: a run already queued and not finished stays queued once). */
  enqueue(runId: string): Promise<void>;
  /**
   * Queues a PENDING run again when its queue job is gone or already finished (the process that launched it died between the
   * insert and the enqueue, or a worker stopping let it go unclaimed). Returns whether it was queued anew.
   */
  requeue(runId: string): Promise<boolean>;
  /** Starts a pg-boss worker on the run queue; returns its id. */
  work(handler: (runId: string) => Promise<void>): Promise<string>;
  /** Queues one VM of a running job for any worker (idempotent per task id). */
  enqueueVm(work: VmJobData): Promise<void>;
  /**
   * Queues a VM again when its queue job ended with the VM unclaimed (a worker stopping let it go); returns whether it was
   * queued anew.
   */
  requeueVm(work: VmJobData): Promise<boolean>;
  /** The queue state of a VM's job ("created", "active", "completed"...), or undefined when it is gone. */
  vmJobState(taskId: string): Promise<string | undefined>;
  /**
   * Makes this process's VM workers fetch now rather than at their next poll (half a second at most): for a worker that knows
   * no other worker would take the VM, so spreading over the cluster is not at stake.
   */
  wakeVmWorkers(): void;
  /** Starts a pg-boss worker on the VM queue; returns its id. */
  workVms(handler: (work: VmJobData) => Promise<void>): Promise<string>;
  /** Stops fetching new jobs (workers of this process); jobs in progress go on until their handlers return. */
  stopWorking(): Promise<void>;
  /** Stops pg-boss, waiting up to `timeoutMs` for handlers still running (the worker aborts its runs first). */
  stop(timeoutMs?: number): Promise<void>;
}

export async function startRunQueue(options: RunQueueOptions): Promise<RunQueue> {
  const pollingIntervalSeconds = options.pollingIntervalSeconds ?? 0.5;
  const boss = new PgBoss({
    connectionString: options.connectionString,
    schema: QUEUE_SCHEMA,
    application_name: "cairn-queue",
    max: options.maxConnections ?? 4,
    // Our ticker fires schedules; pg-boss's cron would only add polling.
    schedule: false,
    pollingIntervalSeconds,
  });
  // While the database is away every poll of every worker fails: one line per outage, then one a minute, not four a second.
  let quietUntil = 0;
  let quieted = 0;
  boss.on("error", (error) => {
    if (!isDatabaseUnavailable(error)) return options.log.warn({ err: error }, "run queue error");
    if (Date.now() < quietUntil) return void quieted++;
    options.log.warn({ err: error, alikeSinceLast: quieted }, "run queue error: the database is not reachable (the queue retries)");
    quietUntil = Date.now() + 60_000;
    quieted = 0;
  });
  await boss.start();
  await boss.createQueue(RUN_QUEUE, {
    name: RUN_QUEUE,
    policy: "standard",
    // A run is executed at most once: the run machinery, not pg-boss, decides what happens to a run that did not end.
    retryLimit: 0,
    // The handler holds the job for the whole run; pg-boss fails a job whose handler outlives this (max < 24 h).
    expireInHours: 23,
  });
  await boss.createQueue(VM_QUEUE, { name: VM_QUEUE, policy: "standard", retryLimit: 0, expireInHours: 23 });

  const workerIds: string[] = [];
  const vmWorkerIds: string[] = [];
  let stopping = false;
  /** Ends the waits of `untilReachable` at once when the queue stops. */
  const stopped = new AbortController();
  /**
   * pg-boss completes (or fails) a job right after its handler returns, without waiting for that write: if the database is
   * away at that moment, the write's rejection is left unobserved. So a handler returns only once pg-boss's own connection
   * pool answers again (or the queue stops).
   */
  const untilReachable = async () => {
    for (let wait = 250; !stopping; wait = Math.min(wait * 2, 5000)) {
      try {
        await boss.getDb().executeSql("SELECT 1", []);
        return;
      } catch {
        // Not reachable yet: the supervisor logs the outage; this only holds the job until it is over.
        await delay(wait, undefined, { signal: stopped.signal }).catch(() => undefined);
      }
    }
  };
  const wakeLocalWorkers = () => {
    for (const id of workerIds) boss.notifyWorker(id);
  };

  return {
    boss,
    pollingIntervalSeconds,
    async enqueue(runId) {
      await boss.send(RUN_QUEUE, { runId } satisfies RunJobData, { id: runId });
      wakeLocalWorkers();
    },
    async requeue(runId) {
      const job = await boss.getJobById<RunJobData>(RUN_QUEUE, runId);
      if (job && (job.state === "created" || job.state === "retry" || job.state === "active")) return false;
      if (job) await boss.deleteJob(RUN_QUEUE, runId);
      const id = await boss.send(RUN_QUEUE, { runId } satisfies RunJobData, { id: runId });
      wakeLocalWorkers();
      return id !== null;
    },
    async work(handler) {
      const id = await boss.work<RunJobData>(RUN_QUEUE, { batchSize: 1, pollingIntervalSeconds }, async (jobs) => {
        for (const job of jobs) {
          // A run never fails its queue job: the Run row says what happened, and pg-boss's fail() is the same unobserved write.
          await handler(job.data.runId).catch((error: unknown) =>
            options.log.error({ err: error, runId: job.data.runId }, "the run handler failed; the run's row tells what happened"),
          );
        }
        await untilReachable();
      });
      workerIds.push(id);
      return id;
    },
    async enqueueVm(work) {
      // Local VM workers are not woken: every worker polls, so the VMs of a run spread over the cluster instead of all going
      // to the process that queued them.
      await boss.send(VM_QUEUE, work satisfies VmJobData, { id: work.taskId });
    },
    async requeueVm(work) {
      const job = await boss.getJobById<VmJobData>(VM_QUEUE, work.taskId);
      if (job && (job.state === "created" || job.state === "retry" || job.state === "active")) return false;
      if (job) await boss.deleteJob(VM_QUEUE, work.taskId);
      return (await boss.send(VM_QUEUE, work satisfies VmJobData, { id: work.taskId })) !== null;
    },
    wakeVmWorkers() {
      for (const id of vmWorkerIds) boss.notifyWorker(id);
    },
    async vmJobState(taskId) {
      return (await boss.getJobById<VmJobData>(VM_QUEUE, taskId))?.state;
    },
    async workVms(handler) {
      const id = await boss.work<VmJobData>(VM_QUEUE, { batchSize: 1, pollingIntervalSeconds }, async (jobs) => {
        for (const job of jobs) {
          await handler(job.data).catch((error: unknown) =>
            options.log.error({ err: error, taskId: job.data.taskId }, "the VM handler failed; the VM's task tells what happened"),
          );
        }
        await untilReachable();
      });
      workerIds.push(id);
      vmWorkerIds.push(id);
      return id;
    },
    async stopWorking() {
      stopping = true;
      stopped.abort();
      vmWorkerIds.length = 0;
      await Promise.all(workerIds.splice(0).map((id) => boss.offWork({ id })));
    },
    async stop(timeoutMs = 30_000) {
      stopping = true;
      stopped.abort();
      await boss.stop({ graceful: true, wait: true, timeout: timeoutMs });
    },
  };
}
