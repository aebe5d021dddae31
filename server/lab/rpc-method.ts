import type { LabPool } from "./pool-state.js";
import { XapiFailure } from "./xapi-failure.js";

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
  /** Whether XAPI marks the call's task cancellable as it starts (`TaskHelper.set_cancellable`); the body then polls. */
  cancellable?: boolean;
  run(context: RpcContext, args: unknown[]): unknown;
}

export type MethodTable = Map<string, RpcMethod>;

/** Adds `methods` (keyed by full name) to `table`. */
export function register(table: MethodTable, methods: Record<string, RpcMethod>): void {
  for (const [name, method] of Object.entries(methods)) table.set(name, method);
}

/** A call checked as XAPI checks it, ready to run. */
export interface ResolvedCall {
  /** The method's name without `Async.`. */
  name: string;
  spec: RpcMethod;
  session: string;
  /** The arguments after the session, surplus ones dropped. */
  args: unknown[];
  isAsync: boolean;
}

const ASYNC = "Async.";

/**
 * XAPI's parameter count rule (ocaml/idl/ocaml_backend/gen_server.ml): the count excludes the session and the parameters
 * that have a default; too few is `MESSAGE_PARAMETER_COUNT_MISMATCH [method, expected, received]` (`["VM.start","3","1"]`).
 * Surplus arguments are ignored only by methods that have defaulted parameters (their generated pattern ends with a
 * `default_args` tail); a method without defaults matches an exact list, so a surplus is a mismatch as well.
 * @returns the arguments the method reads (surplus dropped).
 */
export function checkParameterCount(name: string, spec: RpcMethod, args: readonly unknown[]): unknown[] {
  const defaulted = spec.optional ?? 0;
  const required = spec.params.length - defaulted;
  if (args.length < required || (defaulted === 0 && args.length > required)) {
    throw new XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", [name, String(required), String(args.length)]);
  }
  return args.slice(0, spec.params.length);
}

/**
 * Resolves one session-bound call in XAPI's order (the generated `dispatch_call`): a known method name first, then its
 * parameter count, then the session. An unknown name goes to XAPI's extension path, which checks the session first and
 * then answers `MESSAGE_METHOD_UNKNOWN [name]` (with no parameters at all, `MESSAGE_METHOD_UNKNOWN` at once).
 * `checkSession` throws `SESSION_INVALID [ref]`.
 */
export function resolveCall(
  methods: MethodTable,
  method: string,
  params: readonly unknown[],
  checkSession: (ref: unknown) => string,
): ResolvedCall {
  const isAsync = method.startsWith(ASYNC);
  const name = isAsync ? method.slice(ASYNC.length) : method;
  const spec = methods.get(name);
  if (spec === undefined || (isAsync && spec.async !== true)) {
    if (params.length > 0) checkSession(params[0]);
    throw new XapiFailure("MESSAGE_METHOD_UNKNOWN", [method]);
  }
  if (params.length === 0)
    throw new XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", [name, String(spec.params.length - (spec.optional ?? 0)), "-1"]);
  const args = checkParameterCount(name, spec, params.slice(1));
  const session = checkSession(params[0]);
  return { name, spec, session, args, isAsync };
}
