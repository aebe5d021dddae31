import { LabDiskError } from "./lab-disk-error.js";
import type { LabPool } from "./pool-state.js";
import { type MethodTable, resolveCall } from "./rpc-method.js";
import { XapiFailure } from "./xapi-failure.js";

/** `system.listMethods`: every synchronous method name (the client derives its watched classes from `X.get_all_records`). */
export function listMethods(methods: MethodTable): string[] {
  return ["system.listMethods", "session.login_with_password", ...methods.keys()].sort();
}

// session.login_with_password(uname, pwd, version = "", originator = ""): two required, surplus ignored (it has defaults).
const LOGIN_REQUIRED = 2;

/**
 * Runs one XAPI call as XAPI does: `session.login_with_password` and `system.listMethods` need no session; everything
 * else goes through `resolveCall` (the method name, then the parameter count without the session and the defaulted
 * parameters, then the session). `Async.X.y` returns a task ref at once.
 */
export async function dispatch(pool: LabPool, methods: MethodTable, method: string, params: unknown[]): Promise<unknown> {
  try {
    if (method === "system.listMethods") return listMethods(methods);
    if (method === "session.login_with_password") {
      if (params.length < LOGIN_REQUIRED) {
        throw new XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", [method, String(LOGIN_REQUIRED), String(params.length)]);
      }
      return pool.sessions.login(params[0], params[1]);
    }
    const call = resolveCall(methods, method, params, (ref) => pool.sessions.check(ref));
    const { name, spec, session, args } = call;
    if (name === "VM.snapshot_with_quiesce" && pool.faults.state.quiesce === "removed") throw new XapiFailure("MESSAGE_REMOVED", []);
    if (call.isAsync) {
      return pool.tasks.runAsync(method, (task) => spec.run({ pool, session, task, method }, args), spec.cancellable === true);
    }
    return await spec.run({ pool, session, method }, args);
  } catch (error) {
    if (error instanceof LabDiskError) throw new XapiFailure("VDI_IO_ERROR", [error.message]);
    throw error;
  }
}
