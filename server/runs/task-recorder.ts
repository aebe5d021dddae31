/**
 * Records a run's task tree in the Task table and publishes a `task` event for every change (TaskContext's implementation),
 * and applies a run's totals to its Run row (RunReporter).
 *
 * Progress is the one thing called often (every chunk of a transfer): it is coalesced to at most one database write and one
 * event per `minIntervalMs` per task (leading edge at once, then the latest value at the end of the interval). Every other
 * change (start, warning, end) is written and published at once, after any pending progress of that task, so the last event
 * of a task always carries its final status. Writes of one task are serialised in call order.
 */
import type { Db } from "../db/prisma.js";
import type { RunStatus } from "../db/generated/enums.js";
import type { EventBus } from "../events/event-bus.js";
import type { Logger } from "../log.js";
import type { RunTotals } from "../engine/run-executor.js";
import type { TaskContext } from "../engine/task-context.js";
import { messageOf } from "../errors.js";

/** At most 4 progress events per second per task (API.md: "a few per second"). */
export const PROGRESS_INTERVAL_MS = 250;

type FinalStatus = Extract<RunStatus, "SUCCESS" | "FAILURE" | "SKIPPED" | "CANCELLED" | "INTERRUPTED">;

interface RecorderDeps {
  db: Db;
  events: EventBus;
  log: Logger;
  runId: string;
  /** @default PROGRESS_INTERVAL_MS */
  minIntervalMs?: number;
  /**
   * The position of the first task this recorder creates. A worker executing one VM of a run held by another worker records
   * that VM's subtree with its own recorder: its positions start past every other recorder's (vm-dispatch.ts). @default 0
   */
  firstPosition?: number;
}

/** JSON-safe copy of a task result (bigints become numbers when safe, strings otherwise). */
function jsonResult(result: Record<string, unknown>): object {
  return JSON.parse(
    JSON.stringify(result, (_key, value: unknown) =>
      typeof value === "bigint" ? (value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString()) : value,
    ),
  ) as object;
}

/**
 * The task tree of one run. `position` is a counter in creation order, so a parent always comes before its children.
 */
export class TaskRecorder {
  private nextPosition = 0;
  private readonly tasks = new Set<RecordedTask>();
  readonly minIntervalMs: number;

  constructor(readonly deps: RecorderDeps) {
    this.minIntervalMs = deps.minIntervalMs ?? PROGRESS_INTERVAL_MS;
    this.nextPosition = deps.firstPosition ?? 0;
  }

  /**
   * A task another recorder created (the VM task of a run held by another worker), continued here; `stamp` is merged into its
   * result when it ends (which worker did it).
   */
  adopt(taskId: string, stamp?: Record<string, unknown>): RecordedTask {
    const task = new RecordedTask(this, taskId, stamp);
    this.tasks.add(task);
    return task;
  }
  /** Creates the run's root task (RUNNING). */
  root(kind: string, name: string): Promise<TaskContext> {
    return this.create(null, kind, name);
  }

  /** @internal used by RecordedTask.child */
  async create(parentId: string | null, kind: string, name: string, vmUuid?: string): Promise<RecordedTask> {
    // Taken before any await, so that positions follow the order of the calls.
    const position = this.nextPosition++;
    const row = await this.deps.db.task.create({
      data: { runId: this.deps.runId, parentId, position, kind, name, status: "RUNNING", vmUuid: vmUuid ?? null },
      select: { id: true },
    });
    const task = new RecordedTask(this, row.id);
    this.tasks.add(task);
    await this.publish(row.id);
    return task;
  }

  /** Ends every task still open (children before parents) with `status`: used when a run is cancelled, fails or stops. */
  async endOpen(status: Exclude<FinalStatus, "SUCCESS">, message: string, except?: TaskContext): Promise<void> {
    const open = [...this.tasks].filter((t) => !t.ended && t !== except).reverse();
    for (const task of open) await task.finish(status, { message });
  }

  /** Waits for every pending write and event of the tree. */
  async flush(): Promise<void> {
    await Promise.all([...this.tasks].map((t) => t.flush()));
  }

  /** @internal */
  async publish(taskId: string): Promise<void> {
    await this.deps.events.publish({ type: "task", runId: this.deps.runId, taskId });
  }
}

/** One node of the tree. The first final status wins: ending a task twice is a no-op (logged at debug). */
export class RecordedTask implements TaskContext {
  readonly runId: string;
  ended = false;
  private chain: Promise<void> = Promise.resolve();
  private pending: { progress: number; sizeBytes?: number } | undefined;
  private lastWrite = 0;
  private timer: NodeJS.Timeout | undefined;
  private latestProgress = 0;
  private latestSize: number | undefined;

  constructor(
    private readonly recorder: TaskRecorder,
    readonly id: string,
    private readonly stamp?: Record<string, unknown>,
  ) {
    this.runId = recorder.deps.runId;
  }

  child(kind: string, name: string, options?: { vmUuid?: string }): Promise<TaskContext> {
    return this.recorder.create(this.id, kind, name, options?.vmUuid);
  }

  progress(fraction: number, sizeBytes?: number): void {
    if (this.ended) return;
    this.latestProgress = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
    if (sizeBytes !== undefined) this.latestSize = sizeBytes;
    this.pending = { progress: this.latestProgress, sizeBytes: this.latestSize };
    if (this.timer) return;
    const wait = this.lastWrite + this.recorder.minIntervalMs - Date.now();
    if (wait <= 0) this.writeProgress();
    else this.timer = setTimeout(() => this.writeProgress(), wait);
  }

  warn(message: string): Promise<void> {
    return this.enqueue(async () => {
      await this.recorder.deps.db.task.update({ where: { id: this.id }, data: { warnings: { push: message } } });
      await this.recorder.publish(this.id);
    });
  }

  succeed(result?: Record<string, unknown>, sizeBytes?: number): Promise<void> {
    return this.finish("SUCCESS", { result, sizeBytes });
  }

  fail(error: unknown, result?: Record<string, unknown>): Promise<void> {
    return this.finish("FAILURE", { message: messageOf(error), result });
  }

  note(message: string | null): Promise<void> {
    if (this.ended) return this.chain;
    // Writes keep call order, and a note after the end is dropped above: the end's message is the last word.
    return this.enqueue(async () => {
      await this.recorder.deps.db.task.update({ where: { id: this.id }, data: { message } });
      await this.recorder.publish(this.id);
    });
  }

  end(status: "SKIPPED" | "CANCELLED" | "INTERRUPTED", message: string): Promise<void> {
    return this.finish(status, { message });
  }

  async run<T>(kind: string, name: string, work: (task: TaskContext) => Promise<T>, options?: { vmUuid?: string }): Promise<T> {
    const task = (await this.child(kind, name, options)) as RecordedTask;
    let value: T;
    try {
      value = await work(task);
    } catch (error) {
      await task.fail(error);
      throw error;
    }
    const isRecord = value !== null && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype;
    await task.succeed(isRecord ? (value as Record<string, unknown>) : undefined);
    return value;
  }

  /** @internal */
  finish(status: FinalStatus, options: { message?: string; result?: Record<string, unknown>; sizeBytes?: number }): Promise<void> {
    if (this.ended) {
      this.recorder.deps.log.debug({ taskId: this.id, status }, "ignored a second end of a task");
      return this.chain;
    }
    this.ended = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
    // The bytes of a progress call still waiting for its write are kept, whatever the end.
    const size = options.sizeBytes ?? this.latestSize;
    const result = this.stamp ? { ...options.result, ...this.stamp } : options.result;
    return this.enqueue(async () => {
      await this.recorder.deps.db.task.update({
        where: { id: this.id },
        data: {
          status,
          endedAt: new Date(),
          progress: status === "SUCCESS" ? 1 : this.latestProgress,
          ...(options.message !== undefined && { message: options.message }),
          ...(result !== undefined && { result: jsonResult(result) }),
          ...(size !== undefined && { sizeBytes: BigInt(Math.round(size)) }),
        },
      });
      await this.recorder.publish(this.id);
    });
  }

  /** @internal */
  flush(): Promise<void> {
    return this.chain;
  }

  private writeProgress(): void {
    this.timer = undefined;
    const values = this.pending;
    this.pending = undefined;
    if (!values || this.ended) return;
    this.lastWrite = Date.now();
    void this.enqueue(async () => {
      await this.recorder.deps.db.task.update({
        where: { id: this.id },
        data: {
          progress: values.progress,
          ...(values.sizeBytes !== undefined && { sizeBytes: BigInt(Math.round(values.sizeBytes)) }),
        },
      });
      await this.recorder.publish(this.id);
    }).catch((error: unknown) => this.recorder.deps.log.warn({ err: error, taskId: this.id }, "could not record task progress"));
  }

  /** Runs `write` after every earlier write of this task; a failed write does not block the next ones. */
  private enqueue(write: () => Promise<void>): Promise<void> {
    const next = this.chain.then(write);
    // Not lost: the caller gets `next` and reports its failure; the chain itself must go on to the next write.
    this.chain = next.catch(() => undefined);
    return next;
  }
}

/**
 * Applies an executor's RunTotals to the Run row, coalesced like task progress, and publishes a `run` event per write.
 * transferredBytes never goes down.
 */
export class RunReporter {
  private pending: RunTotals = {};
  private dirty = false;
  private lastWrite = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private maxBytes = 0;
  private closed = false;

  constructor(
    private readonly deps: { db: Db; events: EventBus; log: Logger; runId: string; jobId: string | null; minIntervalMs?: number },
  ) {}

  report(totals: RunTotals): void {
    if (this.closed) return;
    if (totals.transferredBytes !== undefined) this.maxBytes = Math.max(this.maxBytes, totals.transferredBytes);
    this.pending = { ...this.pending, ...totals, ...(totals.transferredBytes !== undefined && { transferredBytes: this.maxBytes }) };
    this.dirty = true;
    if (this.timer) return;
    const wait = this.lastWrite + (this.deps.minIntervalMs ?? PROGRESS_INTERVAL_MS) - Date.now();
    if (wait <= 0) this.write();
    else this.timer = setTimeout(() => this.write(), wait);
  }

  /** Writes what is pending now and stops accepting reports; resolves when every write is done. */
  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.write();
    this.closed = true;
    await this.chain;
  }

  private write(): void {
    this.timer = undefined;
    if (!this.dirty || this.closed) return;
    const totals = this.pending;
    this.pending = {};
    this.dirty = false;
    this.lastWrite = Date.now();
    const { db, events, runId, jobId, log } = this.deps;
    this.chain = this.chain
      .then(async () => {
        await db.run.update({
          where: { id: runId },
          data: {
            ...(totals.vmsTotal !== undefined && { vmsTotal: totals.vmsTotal }),
            ...(totals.vmsSucceeded !== undefined && { vmsSucceeded: totals.vmsSucceeded }),
            ...(totals.vmsFailed !== undefined && { vmsFailed: totals.vmsFailed }),
            ...(totals.transferredBytes !== undefined && { transferredBytes: BigInt(Math.round(totals.transferredBytes)) }),
            ...(totals.progress !== undefined && { progress: Math.min(1, Math.max(0, totals.progress)) }),
            ...(totals.vmUuids !== undefined && { vmUuids: totals.vmUuids }),
          },
        });
        await events.publish({ type: "run", runId, jobId });
      })
      .catch((error: unknown) => log.warn({ err: error, runId }, "could not record run totals"));
  }
}
