import { createHash } from "node:crypto";
import { classFields, defaultRecord, type XapiRecord } from "./class-defaults.js";
import type { LabPool } from "./pool-state.js";
import { type RpcMethod, register, type MethodTable } from "./rpc-method.js";
import { XapiFailure } from "./xapi-failure.js";
import { xapiDate } from "./xapi-values.js";

function requireString(value: unknown, field: string): string {
  if (typeof value !== "string") throw new XapiFailure("FIELD_TYPE_ERROR", [field]);
  return value;
}

/** A stable uuid for a session ref (the lab keeps sessions in memory only, as refs). */
function sessionUuid(ref: string): string {
  const hex = createHash("sha256").update(ref).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** A session's record as XAPI's `session.get_record` gives it, for a live session of the lab's one (superuser) account. */
function sessionRecord(pool: LabPool, ref: unknown): XapiRecord {
  if (!pool.sessions.isValid(ref)) throw new XapiFailure("HANDLE_INVALID", ["session", String(ref)]);
  return defaultRecord("session", {
    uuid: sessionUuid(String(ref)),
    this_host: pool.hostRef,
    last_active: xapiDate(),
    is_local_superuser: true,
    validation_time: xapiDate(),
    auth_user_name: pool.options.user,
  });
}

/** `session.get_record` and the session's field getters (session has no get_all_records on a real pool either). */
function sessionMethods(): Record<string, RpcMethod> {
  const methods: Record<string, RpcMethod> = {
    "session.get_record": { params: ["self"], run: ({ pool }, [ref]) => sessionRecord(pool, ref) },
  };
  for (const field of classFields("session")) {
    methods[`session.get_${field}`] = { params: ["self"], run: ({ pool }, [ref]) => sessionRecord(pool, ref)[field] };
  }
  return methods;
}

/** session (besides login), event and task methods. */
export function registerCoreMethods(table: MethodTable): void {
  register(table, sessionMethods());
  register(table, {
    "session.logout": { params: [], run: ({ pool, session }) => void pool.sessions.logout(session) },
    "event.inject": { params: ["class", "ref"], run: ({ pool }, [cls, ref]) => pool.events.inject(cls, ref) },
    "event.from": {
      params: ["classes", "token", "timeout"],
      run: ({ pool, session }, [classes, token, timeout]) => pool.events.from(session, classes, token, timeout),
    },
    "task.create": {
      params: ["label", "description"],
      run: ({ pool }, [label, description]) => pool.tasks.create(requireString(label, "label"), requireString(description, "description")),
    },
    "task.cancel": {
      params: ["task"],
      async: true,
      run: ({ pool, task: caller }, [task]) => pool.tasks.cancel(requireString(task, "task"), caller),
    },
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
