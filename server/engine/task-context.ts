/**
 * A node of a run's task tree, as the code doing the work sees it. Implemented by server/runs/task-recorder.ts, which
 * persists each node in the Task table and publishes `task` events (progress coalesced to at most 4 per second per task;
 * the event of the final status is always sent).
 */
export interface TaskContext {
  readonly id: string;
  readonly runId: string;
  /** Starts a child task (RUNNING) and returns it. */
  child(kind: string, name: string, options?: { vmUuid?: string }): Promise<TaskContext>;
  /** 0..1, and optionally the bytes done so far. Cheap to call often. */
  progress(fraction: number, sizeBytes?: number): void;
  /** Adds a warning (the task keeps going). */
  warn(message: string): Promise<void>;
  /** Ends the task SUCCESS, with figures (sizes, ids) in `result`. */
  succeed(result?: Record<string, unknown>, sizeBytes?: number): Promise<void>;
  /** Ends the task FAILURE with the error's message, and optionally figures in `result` (what was found before it failed). */
  fail(error: unknown, result?: Record<string, unknown>): Promise<void>;
  /** Sets (or, with null, clears) the message of a task still running: what it is doing or waiting for ("waiting: ..."). */
  note(message: string | null): Promise<void>;
  /** Ends the task with another final status (SKIPPED, CANCELLED, INTERRUPTED) and a message. */
  end(status: "SKIPPED" | "CANCELLED" | "INTERRUPTED", message: string): Promise<void>;
  /**
   * Runs `work` as a child task: SUCCESS with its result, FAILURE (rethrown) when it throws.
   */
  run<T>(kind: string, name: string, work: (task: TaskContext) => Promise<T>, options?: { vmUuid?: string }): Promise<T>;
}
