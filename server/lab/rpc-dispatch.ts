import { LabDiskError } from "./lab-disk-error.js";
import type { LabPool } from "./pool-state.js";
import type { MethodTable } from "./rpc-method.js";
import { XapiFailure } from "./xapi-failure.js";

const ASYNC_PREFIX = "Async.";

/** `system.listMethods`: every synchronous method name (the client derives its watched classes from `X.get_all_records`). */
export function listMethods(methods: MethodTable): string[] {
  return ["system.listMethods", "session.login_with_password", ...methods.keys()].sort();
}

/**
 * Runs one XAPI call as XAPI does: `session.login_with_password` and `system.listMethods` need no
 * session; everything else checks the session first (`SESSION_INVALID`), then the method
 * (`MESSAGE_METHOD_UNKNOWN`), then the arity (`MESSAGE_PARAMETER_COUNT_MISMATCH [method, expected,
 * received]`, counts including the session). `Async.X.y` returns a task ref at once.
 */
export async function dispatch(pool: LabPool, methods: MethodTable, method: string, params: unknown[]): Promise<unknown> {
  try {
    if (method === "system.listMethods") return listMethods(methods);
    if (method === "session.login_with_password") {
      if (params.length < 2 || params.length > 4) {
        throw new XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", [method, "2", String(params.length)]);
      }
      return pool.sessions.login(params[0], params[1]);
    }
    const session = pool.sessions.check(params[0]);
    const isAsync = method.startsWith(ASYNC_PREFIX);
    const name = isAsync ? method.slice(ASYNC_PREFIX.length) : method;
    const spec = methods.get(name);
    if (spec === undefined || (isAsync && spec.async !== true)) throw new XapiFailure("MESSAGE_METHOD_UNKNOWN", [method]);
    if (name === "VM.snapshot_with_quiesce" && pool.faults.state.quiesce === "removed") throw new XapiFailure("MESSAGE_REMOVED", []);
    const expected = spec.params.length + 1;
    const minimum = expected - (spec.optional ?? 0);
    if (params.length < minimum || params.length > expected) {
      throw new XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", [method, String(expected), String(params.length)]);
    }
    const args = params.slice(1);
    if (isAsync) {
      return pool.tasks.runAsync(method, (task) => spec.run({ pool, session, task, method }, args));
    }
    return await spec.run({ pool, session, method }, args);
  } catch (error) {
    if (error instanceof LabDiskError) throw new XapiFailure("VDI_IO_ERROR", [error.message]);
    throw error;
  }
}
