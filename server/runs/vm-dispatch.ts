/**
 * The VMs of one run, spread over every worker of the cluster.
 *
 * The worker holding a run (the "run's worker", run-worker.ts) creates each VM's task and queues it on the VM queue
 * (queue.ts, pg-boss id = task id); any worker polling that queue, the run's own included, takes it, claims the task with a
 * conditional UPDATE (its worker id into the task's result, only while the task is unclaimed and the run RUNNING and not
 * cancelled), backs the VM up with its own pool connections and remotes, and ends the task. The run's worker waits for that
 * end (task events, with a poll as a fallback), reads the VM's bytes and status from the row, and only then gives the job's
 * concurrency slot to the next VM: so the job's VM concurrency holds across workers (backup-executor.ts).
 *
 * Liveness: each worker process holds a session advisory lock (LIVENESS_LOCK_CLASS, hash of its worker id) on a connection
 * of its own for as long as it lives. Postgres drops it the moment the process dies (its socket closes), so the run's worker
 * knows at once that the worker executing a VM is gone (pg_locks) and fails that VM instead of waiting for it forever.
 * A VM's worker polls its run: when the run is cancelled, or no longer RUNNING (its worker died and a sweeper interrupted it),
 * the VM is stopped.
 */
import { hostname } from "node:os";
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import type { Db } from "../db/prisma.js";
import { Prisma } from "../db/prisma.js";
import type { EventBus } from "../events/event-bus.js";
import type { Logger } from "../log.js";
import type { VmDispatcher, VmEnd, VmExecutor } from "../engine/run-executor.js";
import type { TaskContext } from "../engine/task-context.js";
import type { RunQueue, VmJobData } from "./queue.js";
import { RecordedTask, TaskRecorder } from "./task-recorder.js";
import { CANCELLED_MESSAGE, SHUTDOWN_MESSAGE, parseWorkerId, processExists } from "./run-worker.js";

/** First key of the liveness locks (the second is the hash of the worker id): "Ca". */
export const LIVENESS_LOCK_CLASS = 0x4361;
/** Where the task positions of a VM's subtree start, when another worker records it: past the run's own tasks. */
const SUBTREE_POSITION_BASE = 1_000_000;
const SUBTREE_POSITION_SPAN = 10_000;

const UTC_NOW = Prisma.sql`timezone('UTC', now())`;
const lockKey = (workerId: string) => Prisma.sql`${LIVENESS_LOCK_CLASS}::int, (hashtext(${workerId}) & 2147483647)::int`;

export const LOST_VM_MESSAGE = (worker: string) =>
  `The worker backing up this VM (${worker}) stopped (crash or kill) before it ended; run the job again to back it up.`;

/**
 * Holds this worker's liveness lock for as long as the process runs; a lost connection is opened again and the lock taken
 * anew (meanwhile the VMs this worker executes may be judged lost by their runs' workers).
 */
export async function holdLivenessLock(connectionString: string, workerId: string, log: Logger): Promise<{ release(): Promise<void> }> {
  let client: pg.Client | undefined;
  let closed = false;
  const key = [LIVENESS_LOCK_CLASS, workerId];
  const take = async (): Promise<void> => {
    const next = new pg.Client({ connectionString, application_name: "cairn-worker-liveness" });
    next.on("error", () => undefined);
    next.on("end", () => {
      if (closed || client !== next) return;
      client = undefined;
      log.warn("the worker's liveness connection was lost; taking the lock again");
      void retake();
    });
    await next.connect();
    await next.query("SELECT pg_advisory_lock($1::int, (hashtext($2) & 2147483647)::int)", key);
    if (closed) return void (await next.end().catch(() => undefined));
    client = next;
  };
  const retake = async () => {
    for (let wait = 500; !closed && !client; wait = Math.min(wait * 2, 5000)) {
      await take().catch((error: unknown) => log.debug({ err: error }, "could not take the liveness lock yet"));
      if (!client) await delay(wait);
    }
  };
  await take();
  return {
    async release() {
      closed = true;
      await client?.end().catch(() => undefined);
      client = undefined;
    },
  };
}

/** Whether the worker named holds its liveness lock (is alive), as Postgres sees it. */
export async function workerAlive(db: Db, workerId: string): Promise<boolean> {
  const rows = await db.$queryRaw<{ alive: boolean }[]>(Prisma.sql`
    SELECT EXISTS (
      SELECT 1 FROM pg_locks l, (SELECT ${lockKey(workerId)}) AS k(a, b)
      WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted AND l.classid = k.a::oid AND l.objid = k.b::oid
    ) AS alive`);
  return rows[0]?.alive ?? false;
}

/** How many worker processes of the cluster are alive (their liveness locks held). */
async function liveWorkers(db: Db): Promise<number> {
  const rows = await db.$queryRaw<{ count: number }[]>(Prisma.sql`
    SELECT count(*)::int AS count FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted AND l.classid = ${LIVENESS_LOCK_CLASS}::int::oid`);
  return rows[0]?.count ?? 0;
}

interface TaskRow {
  status: string;
  progress: number;
  sizeBytes: bigint | null;
  message: string | null;
  worker: string | null;
}

export interface VmDispatcherOptions {
  db: Db;
  events: EventBus;
  queue: RunQueue;
  log: Logger;
  runId: string;
  /** The run's signal: once aborted no new VM is claimed, and the wait for VMs under way is bounded. */
  signal: AbortSignal;
  /** How often the row and the executing worker's liveness are read when no event came. @default 1000 */
  pollMs?: number;
  /** After a cancel, how long to wait for the VMs under way to stop before the run ends without them. @default 15000 */
  abortGraceMs?: number;
  /** How long a worker on another host may lack its liveness lock before its VM is judged lost. @default 20000 */
  lostAfterMs?: number;
  /** Told the id of a worker that died while backing up a VM of this run (its snapshot and files are cleaned after the run). */
  onLostWorker?: (workerId: string) => void;
}

export function createVmDispatcher(options: VmDispatcherOptions): VmDispatcher {
  const { db, events, queue, log, runId, signal } = options;
  const pollMs = options.pollMs ?? 1000;
  const abortGraceMs = options.abortGraceMs ?? 15_000;
  const lostAfterMs = options.lostAfterMs ?? 20_000;
  const readTask = async (taskId: string) =>
    (
      await db.$queryRaw<TaskRow[]>(Prisma.sql`
        SELECT status::text AS status, progress, "sizeBytes", message, result->>'worker' AS worker FROM "Task" WHERE id = ${taskId}::uuid`)
    )[0];
  /** Ends the task (and what is still running under it) when nobody can end it any more; no-op once it has ended. */
  const endForWorker = async (taskId: string, status: "FAILURE" | "CANCELLED", message: string, onlyUnclaimed: boolean) => {
    await db.$executeRaw(Prisma.sql`
      WITH RECURSIVE sub AS (
        SELECT id FROM "Task" WHERE "parentId" = ${taskId}::uuid
        UNION ALL SELECT t.id FROM "Task" t JOIN sub ON t."parentId" = sub.id)
      UPDATE "Task" SET status = 'INTERRUPTED', "endedAt" = ${UTC_NOW}, message = COALESCE(message, ${message})
      WHERE id IN (SELECT id FROM sub) AND status = 'RUNNING'`);
    await db.$executeRaw(Prisma.sql`
      UPDATE "Task" SET status = ${status}::"RunStatus", "endedAt" = ${UTC_NOW}, message = ${message}
      WHERE id = ${taskId}::uuid AND status = 'RUNNING' ${onlyUnclaimed ? Prisma.sql`AND result IS NULL` : Prisma.empty}`);
    await events.publish({ type: "task", runId, taskId });
  };

  /**
   * Whether the worker executing a VM is gone. On this host its pid answers at once: a process that still runs is alive even
   * while its liveness lock is briefly missing (after a database restart the lock is taken again with a backoff, and failing
   * its VM meanwhile would fail a healthy backup). Elsewhere, the lock must be missing for `lostAfterMs` on end, which covers
   * that same window.
   */
  const missingSince = new Map<string, number>();
  const workerLost = async (worker: string): Promise<boolean> => {
    const parsed = parseWorkerId(worker);
    if (parsed && parsed.host === hostname()) return !processExists(parsed.pid);
    if (await workerAlive(db, worker)) {
      missingSince.delete(worker);
      return false;
    }
    const since = missingSince.get(worker) ?? Date.now();
    missingSince.set(worker, since);
    return Date.now() - since >= lostAfterMs;
  };

  return {
    async run(task: TaskContext, vmUuid: string, index: number, onProgress: (fraction: number, bytes: number) => void): Promise<VmEnd> {
      const taskId = task.id;
      const stream = new AbortController();
      let wake: (() => void) | undefined;
      const watching = (async () => {
        // The VM's own task: its worker writes the VM's progress and bytes there, and its end.
        for await (const _event of events.subscribe(stream.signal, (event) => event.type === "task" && event.taskId === taskId)) {
          wake?.();
        }
      })();
      const onAbort = () => wake?.();
      signal.addEventListener("abort", onAbort);
      let abortedAt: number | undefined;
      let checkedAlive = 0;
      try {
        await queue.enqueueVm({ runId, taskId, vmUuid, index } satisfies VmJobData);
        // Alone, this process's VM workers would take the VM anyway, at their next poll: they fetch now instead (a backup
        // started half a second sooner). With other workers alive, their polls spread the VMs over the cluster.
        if ((await liveWorkers(db).catch(() => 2)) <= 1) queue.wakeVmWorkers();
        for (;;) {
          const waited = new Promise<void>((resolve) => (wake = resolve));
          const row = await readTask(taskId);
          if (!row) return { status: "FAILURE", message: "The VM's task was deleted.", sizeBytes: 0, worker: null };
          const sizeBytes = Number(row.sizeBytes ?? 0);
          if (row.status !== "RUNNING") {
            // Ended by the worker that executed it: this process's handle on the task must not end it a second time.
            if (task instanceof RecordedTask) task.ended = true;
            return { status: row.status as VmEnd["status"], message: row.message, sizeBytes, worker: row.worker };
          }
          onProgress(row.progress, sizeBytes);
          const checkAlive = Date.now() - checkedAlive >= pollMs;
          if (checkAlive) checkedAlive = Date.now();
          if (row.worker && checkAlive && (await workerLost(row.worker))) {
            // Read again: the worker may have ended the task and exited between the two reads.
            if ((await readTask(taskId))?.status === "RUNNING") {
              log.warn({ taskId, vmUuid, worker: row.worker }, "the worker backing up a VM of this run died; the VM is failed");
              await endForWorker(taskId, "FAILURE", LOST_VM_MESSAGE(row.worker), false);
              options.onLostWorker?.(row.worker);
            }
            continue;
          }
          if (!row.worker && checkAlive && !signal.aborted && (await queue.requeueVm({ runId, taskId, vmUuid, index }))) {
            // Its queue job ended and nobody claimed it (a worker stopping let it go): someone else takes it.
            log.info({ taskId, vmUuid }, "queued a VM again: its queue job ended unclaimed");
          }
          if (signal.aborted) {
            abortedAt ??= Date.now();
            const reason = String(signal.reason);
            if (!row.worker && (await queue.vmJobState(taskId)) !== "active") {
              await endForWorker(taskId, "CANCELLED", "stopped before a worker took it", true);
              continue;
            }
            // A shutdown or an outage does not wait: the run is ended INTERRUPTED at once and its VMs stop when they see it.
            if (reason === "shutdown" || reason === "database" || Date.now() - abortedAt > abortGraceMs) {
              return { status: "INTERRUPTED", message: `stopped: ${reason}`, sizeBytes, worker: row.worker };
            }
          }
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([waited, new Promise<void>((resolve) => (timer = setTimeout(resolve, pollMs)))]);
          clearTimeout(timer);
        }
      } finally {
        signal.removeEventListener("abort", onAbort);
        stream.abort();
        await watching;
      }
    },
  };
}

/**
 * The VM's task as the executor sees it, with its end held back (the first end wins, as on a RecordedTask) until the worker
 * has ended what is still open under it.
 */
function deferEnd(task: RecordedTask): { task: TaskContext; end?: () => Promise<void> } {
  const hold = (end: () => Promise<void>) => {
    holder.end ??= end;
  };
  const holder: { task: TaskContext; end?: () => Promise<void> } = {
    task: {
      id: task.id,
      runId: task.runId,
      child: (kind, name, options) => task.child(kind, name, options),
      progress: (fraction, sizeBytes) => task.progress(fraction, sizeBytes),
      warn: (message) => task.warn(message),
      note: (message) => task.note(message),
      run: (kind, name, work, options) => task.run(kind, name, work, options),
      succeed: async (result, sizeBytes) => hold(() => task.succeed(result, sizeBytes)),
      fail: async (error, result) => hold(() => task.fail(error, result)),
      end: async (status, message) => hold(() => task.end(status, message)),
    },
  };
  return holder;
}

export interface VmWorker {
  /** Task ids of the VMs this worker is backing up now. */
  running(): string[];
  /** Stops taking VMs, aborts those under way (reason "shutdown") and waits for them up to `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** Takes VMs from the VM queue, `slots` at once, and backs them up with `executor`. */
export async function startVmWorker(options: {
  db: Db;
  events: EventBus;
  log: Logger;
  queue: RunQueue;
  executor: VmExecutor;
  workerId: string;
  slots: number;
  /** How often the run of a VM is read (cancel, run no longer RUNNING). @default 1000 */
  pollMs?: number;
}): Promise<VmWorker> {
  const { db, events, log, queue, workerId } = options;
  const pollMs = options.pollMs ?? 1000;
  const active = new Map<string, { controller: AbortController; done: Promise<void> }>();
  let stopping = false;

  const execute = async (work: VmJobData): Promise<void> => {
    if (stopping) return; // unclaimed: the run's worker sees it and ends the VM's task
    const claimed = await db.$queryRaw<{ id: string; name: string }[]>(Prisma.sql`
      UPDATE "Task" t SET result = jsonb_build_object('worker', ${workerId}::text)
      FROM "Run" r
      WHERE t.id = ${work.taskId}::uuid AND t.status = 'RUNNING' AND t.result IS NULL
        AND r.id = t."runId" AND r.status = 'RUNNING' AND r."cancelRequestedAt" IS NULL
      RETURNING t.id, t.name`);
    if (claimed.length === 0) return;
    const row = await db.run.findUniqueOrThrow({ where: { id: work.runId } });
    const vmLog = log.child({ runId: work.runId, taskId: work.taskId, vmUuid: work.vmUuid });
    const recorder = new TaskRecorder({
      db,
      events,
      log: vmLog,
      runId: work.runId,
      firstPosition: SUBTREE_POSITION_BASE + work.index * SUBTREE_POSITION_SPAN,
    });
    const task = recorder.adopt(work.taskId, { worker: workerId });
    const deferred = deferEnd(task);
    const controller = new AbortController();
    let finish!: () => void;
    active.set(work.taskId, { controller, done: new Promise<void>((resolve) => (finish = resolve)) });

    const checkRun = async () => {
      const run = await db.run.findUnique({ where: { id: work.runId }, select: { status: true, cancelRequestedAt: true } });
      if (!run || run.status !== "RUNNING") controller.abort("lost");
      else if (run.cancelRequestedAt) controller.abort("cancelled");
    };
    const poll = setInterval(() => {
      checkRun().catch((error: unknown) => vmLog.warn({ err: error }, "could not read the run of a VM"));
    }, pollMs);
    const subscription = new AbortController();
    const watching = (async () => {
      for await (const _event of events.subscribe(subscription.signal, (event) => event.type === "run" && event.runId === work.runId)) {
        await checkRun().catch(() => undefined);
      }
    })();
    try {
      vmLog.info("backing up a VM of a run");
      await options.executor({
        run: {
          id: row.id,
          kind: row.kind,
          jobId: row.jobId,
          scheduleId: row.scheduleId,
          trigger: row.trigger,
          params: row.params,
        },
        vmUuid: work.vmUuid,
        vmName: claimed[0].name,
        task: deferred.task,
        signal: controller.signal,
        log: vmLog,
      });
    } catch (error) {
      await deferred.task.fail(error);
    } finally {
      clearInterval(poll);
      subscription.abort();
      await watching;
      // Its subtasks end before the VM's task does: the run's worker ends the run as soon as it sees the VM's end.
      const reason = controller.signal.aborted ? String(controller.signal.reason) : undefined;
      const open =
        reason === "cancelled"
          ? { status: "CANCELLED" as const, message: CANCELLED_MESSAGE }
          : {
              status: "INTERRUPTED" as const,
              message: reason === "shutdown" ? SHUTDOWN_MESSAGE : "The VM's backup ended before this task did.",
            };
      await recorder
        .endOpen(open.status, open.message, task)
        .catch((error: unknown) => vmLog.warn({ err: error }, "could not end open tasks"));
      await (deferred.end ?? (() => task.end(open.status === "CANCELLED" ? "CANCELLED" : "INTERRUPTED", open.message)))().catch(
        (error: unknown) => vmLog.warn({ err: error }, "could not record the end of a VM"),
      );
      await recorder.flush();
      active.delete(work.taskId);
      finish();
    }
  };

  for (let i = 0; i < Math.max(1, options.slots); i++) await queue.workVms(execute);
  return {
    running: () => [...active.keys()],
    async stop(graceMs = 10_000) {
      if (stopping) return;
      stopping = true;
      await queue.stopWorking();
      for (const vm of active.values()) vm.controller.abort("shutdown");
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...active.values()].map((vm) => vm.done)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(timer);
    },
  };
}
