import { register, type MethodTable } from "./rpc-method.js";
import { XapiFailure } from "./xapi-failure.js";

function requireString(value: unknown, field: string): string {
  if (typeof value !== "string") throw new XapiFailure("FIELD_TYPE_ERROR", [field]);
  return value;
}

/** session (besides login), event and task methods. */
export function registerCoreMethods(table: MethodTable): void {
  register(table, {
    "session.logout": { params: [], run: ({ pool, session }) => void pool.sessions.logout(session) },
    "session.get_this_host": { params: ["self"], run: ({ pool }) => pool.hostRef },
    "event.inject": { params: ["class", "ref"], run: ({ pool }, [cls, ref]) => pool.events.inject(cls, ref) },
    "event.from": {
      params: ["classes", "token", "timeout"],
      run: ({ pool, session }, [classes, token, timeout]) => pool.events.from(session, classes, token, timeout),
    },
    "task.create": {
      params: ["label", "description"],
      run: ({ pool }, [label, description]) => pool.tasks.create(requireString(label, "label"), requireString(description, "description")),
    },
    "task.cancel": { params: ["task"], async: true, run: ({ pool }, [task]) => pool.tasks.cancel(requireString(task, "task")) },
    "task.destroy": { params: ["self"], run: ({ pool }, [task]) => pool.tasks.destroy(requireString(task, "self")) },
    "task.set_status": {
      params: ["self", "value"],
      run: ({ pool }, [task, status]) => {
        if (!["pending", "success", "failure", "cancelling", "cancelled"].includes(String(status))) {
          throw new XapiFailure("INVALID_VALUE", ["status", String(status)]);
        }
        pool.store.update("task", task, (record) => void (record.status = status));
      },
    },
    "task.set_progress": {
      params: ["self", "value"],
      run: ({ pool }, [task, progress]) => {
        if (typeof progress !== "number") throw new XapiFailure("FIELD_TYPE_ERROR", ["value"]);
        pool.store.update("task", task, (record) => void (record.progress = progress));
      },
    },
    "task.set_result": {
      params: ["self", "value"],
      run: ({ pool }, [task, result]) => void pool.store.update("task", task, (r) => void (r.result = String(result))),
    },
    "task.set_error_info": {
      params: ["self", "value"],
      run: ({ pool }, [task, info]) => {
        if (!Array.isArray(info)) throw new XapiFailure("FIELD_TYPE_ERROR", ["value"]);
        pool.store.update("task", task, (record) => void (record.error_info = info.map(String)));
      },
    },
  });
}
