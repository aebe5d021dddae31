import type { LabPool } from "./pool-state.js";

/** What a method body receives besides its arguments. */
export interface RpcContext {
  pool: LabPool;
  session: string;
  /** The task of an `Async.*` call (for progress, cancellation and `current_operations`). */
  task?: string;
  /** The method name as called (`Async.VM.snapshot`). */
  method: string;
}

/** One XAPI method: its parameters after the session, and its body. */
export interface RpcMethod {
  /** Parameter names after the session ref, for arity checks (`MESSAGE_PARAMETER_COUNT_MISMATCH`). */
  params: readonly string[];
  /** How many trailing parameters may be left out (e.g. `VM.snapshot`'s `ignore_vdis`). */
  optional?: number;
  /** Whether `Async.<name>` may be called (side-effecting methods). */
  async?: boolean;
  run(context: RpcContext, args: unknown[]): unknown;
}

export type MethodTable = Map<string, RpcMethod>;

/** Adds `methods` (keyed by full name) to `table`. */
export function register(table: MethodTable, methods: Record<string, RpcMethod>): void {
  for (const [name, method] of Object.entries(methods)) table.set(name, method);
}
