import { EventEmitter } from "node:events";
import type { ObjectStore } from "./object-store.js";
import { toXapiFailure, XapiFailure } from "./xapi-failure.js";
import { NULL_REF, toXmlRpcValue, xapiDate } from "./xapi-values.js";

/**
 * Task objects as XAPI keeps them (`taskHelper.ml`): pending, then success (result in XML-RPC text),
 * failure (`error_info`) or cancelled. Every change is a store mutation, so clients see it through
 * `event.from`, the only way the xen-api client waits for tasks.
 *
 * Emits `cancel` (task ref) when a cancel reaches a running cancellable task (asked of it, or asked earlier and the task
 * became cancellable since).
 */
export class Tasks extends EventEmitter {
  constructor(
    private readonly store: ObjectStore,
    private readonly hostRef: () => string,
  ) {
    super();
  }

  /** A pending task, not cancellable (`taskHelper.ml` `make`: `allowed_operations = []`) until {@link setCancellable}. */
  create(label: string, description = ""): string {
    return this.store.create("task", {
      name_label: label,
      name_description: description,
      created: xapiDate(),
      resident_on: this.hostRef(),
      allowed_operations: [],
    });
  }

  isPending(ref: string): boolean {
    return this.store.has("task", ref) && this.store.record("task", ref).status === "pending";
  }

  /**
   * `TaskHelper.set_cancellable`: what XAPI calls where an operation polls for cancellation (stream_vdi's imports and
   * exports, VM snapshot/clone/copy/checkpoint, VDI copies, xenopsd's VM operations). A cancel asked for earlier takes
   * effect now (the operation's first poll sees it).
   */
  setCancellable(ref: string | undefined): void {
    if (ref === undefined || !this.isPending(ref)) return;
    if (!(this.store.record("task", ref).allowed_operations as string[]).includes("cancel")) {
      this.store.update("task", ref, (task) => void (task.allowed_operations = ["cancel"]));
    }
    if (this.cancelAsked(ref)) this.emit("cancel", ref);
  }

  /**
   * `TaskHelper.exn_if_cancelling`: throws `TASK_CANCELLED [task]` when a cancel was asked. Only cancellable operations
   * poll (they call {@link setCancellable} first), so a cancel asked of another task has no effect: it completes normally.
   */
  checkCancelled(ref: string | undefined): void {
    if (ref === undefined || !this.isPending(ref)) return;
    if (this.cancelAsked(ref)) throw new XapiFailure("TASK_CANCELLED", [ref]);
  }

  private cancelAsked(ref: string): boolean {
    return Object.values(this.store.record("task", ref).current_operations as Record<string, string>).includes("cancel");
  }

  /** Success with the XML-RPC encoding of `value` as result (`undefined`: no result, `""`). */
  complete(ref: string, value?: unknown): void {
    if (!this.isPending(ref)) return;
    this.store.update("task", ref, (task) => {
      task.status = "success";
      task.progress = 1;
      task.finished = xapiDate();
      task.allowed_operations = [];
      task.result = value === undefined ? "" : toXmlRpcValue(value);
    });
  }

  fail(ref: string, error: unknown): void {
    if (!this.isPending(ref)) return;
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

  /**
   * `task.cancel` (xapi_task.ml `cancel`): records the request in `current_operations` and returns. It does not look at
   * `allowed_operations` (advisory, as the datamodel says of every such field; the message declares OPERATION_NOT_ALLOWED,
   * its implementation never raises it): the task is cancelled only if its operation polls for it, that is once it is
   * cancellable ("a task may fail to be cancelled and may complete or fail normally", datamodel.ml).
   */
  cancel(ref: string, by: string = ref): void {
    this.store.get("task", ref);
    this.store.update("task", ref, (record) => {
      record.current_operations = { [by]: "cancel" };
    });
    if (this.isPending(ref) && (this.store.record("task", ref).allowed_operations as string[]).includes("cancel")) this.emit("cancel", ref);
  }

  /** `task.destroy`: deletes a settled task; a pending one is only marked (as XAPI does). */
  destroy(ref: string): void {
    const task = this.store.record("task", ref);
    if (task.status === "pending") {
      this.store.update("task", ref, (record) => {
        record.current_operations = { ...(record.current_operations as object), [ref]: "destroy" };
      });
      return;
    }
    this.store.destroy("task", ref);
  }

  /**
   * Runs `work` as the body of an `Async.*` call: returns the task ref at once, settles the task later. `cancellable`:
   * the operation is one XAPI marks cancellable as it starts (its `work` polls with {@link checkCancelled}).
   */
  runAsync(label: string, work: (task: string) => unknown, cancellable = false): string {
    const ref = this.create(label);
    if (cancellable) this.setCancellable(ref);
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
   * Runs `work` with `{task: operation}` in the object's `current_operations` (what backup tools read while an export or
   * a copy runs), removed afterwards whatever the outcome. The task becomes cancellable: the HTTP handlers run their
   * streams through this, where XAPI's stream_vdi calls set_cancellable.
   */
  async withOperation<T>(
    cls: "VM" | "VDI" | "SR",
    ref: string,
    task: string | undefined,
    operation: string,
    work: () => Promise<T>,
  ): Promise<T> {
    const key = task ?? NULL_REF;
    this.setCancellable(task);
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
}
