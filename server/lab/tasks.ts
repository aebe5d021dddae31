import { EventEmitter } from "node:events";
import type { ObjectStore } from "./object-store.js";
import { toXapiFailure, XapiFailure } from "./xapi-failure.js";
import { NULL_REF, toXmlRpcValue, xapiDate } from "./xapi-values.js";

/**
 * Task objects as XAPI keeps them (`taskHelper.ml`): pending, then success (result in XML-RPC text),
 * failure (`error_info`) or cancelled. Every change is a store mutation, so clients see it through
 * `event.from`, the only way the xen-api client waits for tasks.
 *
 * Emits `cancel` (task ref) when `task.cancel` is asked for a running task.
 */
export class Tasks extends EventEmitter {
  constructor(
    private readonly store: ObjectStore,
    private readonly hostRef: () => string,
  ) {
    super();
  }

  create(label: string, description = "", cancellable = true): string {
    return this.store.create("task", {
      name_label: label,
      name_description: description,
      created: xapiDate(),
      resident_on: this.hostRef(),
      allowed_operations: cancellable ? ["cancel"] : [],
    });
  }

  isPending(ref: string): boolean {
    return this.store.has("task", ref) && this.store.record("task", ref).status === "pending";
  }

  /** Throws `TASK_CANCELLED [task]` when cancellation was asked: long operations call it between steps. */
  checkCancelled(ref: string | undefined): void {
    if (ref === undefined || !this.store.has("task", ref)) return;
    const status = this.store.record("task", ref).status;
    if (status === "cancelling" || status === "cancelled") throw new XapiFailure("TASK_CANCELLED", [ref]);
  }

  /** Success with the XML-RPC encoding of `value` as result (`undefined`: no result, `""`). */
  complete(ref: string, value?: unknown): void {
    if (!this.isSettleable(ref)) return;
    this.store.update("task", ref, (task) => {
      task.status = "success";
      task.progress = 1;
      task.finished = xapiDate();
      task.allowed_operations = [];
      task.result = value === undefined ? "" : toXmlRpcValue(value);
    });
  }

  fail(ref: string, error: unknown): void {
    if (!this.isSettleable(ref)) return;
    const failure = toXapiFailure(error);
    this.store.update("task", ref, (task) => {
      const cancelled = failure.code === "TASK_CANCELLED";
      task.status = cancelled ? "cancelled" : "failure";
      task.error_info = cancelled ? ["TASK_CANCELLED", ref] : failure.toErrorInfo();
      task.progress = 1;
      task.finished = xapiDate();
      task.allowed_operations = [];
    });
  }

  setProgress(ref: string | undefined, progress: number): void {
    if (ref === undefined || !this.isPending(ref)) return;
    this.store.update("task", ref, (task) => {
      task.progress = Math.max(0, Math.min(1, progress));
    });
  }

  /** `task.cancel`: `OPERATION_NOT_ALLOWED` unless the task is pending and cancellable. */
  cancel(ref: string): void {
    const task = this.store.record("task", ref);
    if (task.status !== "pending" || !(task.allowed_operations as string[]).includes("cancel")) {
      throw new XapiFailure("OPERATION_NOT_ALLOWED", [`task ${ref} cannot be cancelled (status ${String(task.status)})`]);
    }
    this.store.update("task", ref, (record) => {
      record.status = "cancelling";
      record.current_operations = { [ref]: "cancel" };
    });
    this.emit("cancel", ref);
  }

  /** `task.destroy`: deletes a settled task; a pending one is only marked (as XAPI does). */
  destroy(ref: string): void {
    const task = this.store.record("task", ref);
    if (task.status === "pending" || task.status === "cancelling") {
      this.store.update("task", ref, (record) => {
        record.current_operations = { ...(record.current_operations as object), [ref]: "destroy" };
      });
      return;
    }
    this.store.destroy("task", ref);
  }

  /** Runs `work` as the body of an `Async.*` call: returns the task ref at once, settles the task later. */
  runAsync(label: string, work: (task: string) => unknown): string {
    const ref = this.create(label);
    // The task is settled from the work's outcome; nothing is left unhandled.
    void Promise.resolve()
      .then(() => work(ref))
      .then(
        (value) => this.complete(ref, value ?? ""),
        (error: unknown) => this.fail(ref, error),
      );
    return ref;
  }

  /**
   * Runs `work` with `{task: operation}` in the object's `current_operations` (what backup tools read while
   * an export or a copy runs), removed afterwards whatever the outcome.
   */
  async withOperation<T>(
    cls: "VM" | "VDI" | "SR",
    ref: string,
    task: string | undefined,
    operation: string,
    work: () => Promise<T>,
  ): Promise<T> {
    const key = task ?? NULL_REF;
    this.store.update(cls, ref, (record) => {
      record.current_operations = { ...(record.current_operations as object), [key]: operation };
    });
    try {
      return await work();
    } finally {
      if (this.store.has(cls, ref)) {
        this.store.update(cls, ref, (record) => {
          const operations = { ...(record.current_operations as Record<string, string>) };
          delete operations[key];
          record.current_operations = operations;
        });
      }
    }
  }

  private isSettleable(ref: string): boolean {
    if (!this.store.has("task", ref)) return false;
    const status = this.store.record("task", ref).status;
    return status === "pending" || status === "cancelling";
  }
}
