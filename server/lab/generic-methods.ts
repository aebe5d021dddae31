import { classFields, DATAMODEL, type DatamodelClass, XAPI_CLASSES, type XapiClass, type XapiRecord } from "./class-defaults.js";
import { type MethodTable, type RpcMethod, register } from "./rpc-method.js";
import { XapiFailure } from "./xapi-failure.js";

// Fields whose explicit setters (VDI.set_virtual_size, SR.set_physical_utilisation, VM.set_suspend_VDI...) XAPI keeps for
// its own storage backends: the lab derives these from its disks and operations, so it does not answer those setters.
const LAB_MANAGED = new Set([
  "virtual_size",
  "physical_utilisation",
  "physical_size",
  "virtual_allocation",
  "is_a_snapshot",
  "snapshot_of",
  "snapshot_time",
  "suspend_VDI",
  "missing",
  "managed",
  "cbt_enabled",
  "status",
  "progress",
  "result",
  "error_info",
]);

const SCALAR_CHECKS: Record<string, (value: unknown) => boolean> = {
  string: (value) => typeof value === "string",
  int: (value) => typeof value === "number" && Number.isInteger(value),
  float: (value) => typeof value === "number",
  bool: (value) => typeof value === "boolean",
  datetime: (value) => typeof value === "string",
};

/** Whether `value` is a JSON-RPC value of the datamodel type `type` (map keys are strings on the wire, whatever their type). */
export function matchesType(type: string, value: unknown): boolean {
  if (type.endsWith(" set")) {
    const element = type.slice(0, -" set".length);
    return Array.isArray(value) && value.every((item) => matchesType(element, item));
  }
  const map = /^\((.+) -> (.+)\) map$/.exec(type);
  if (map !== null) {
    return (
      typeof value === "object" &&
      value !== null &&
      !Array.isArray(value) &&
      Object.values(value).every((item) => matchesType(map[2], item))
    );
  }
  if (type.endsWith(" ref") || type.startsWith("enum ")) return typeof value === "string";
  return SCALAR_CHECKS[type]?.(value) ?? true;
}

function checkType(cls: XapiClass, field: string, value: unknown, type = DATAMODEL.classes[cls].fields[field]): void {
  if (!matchesType(type, value)) throw new XapiFailure("FIELD_TYPE_ERROR", [field]);
}

type Accessor = "set" | "add_to" | "remove_from" | "add" | "remove";

/**
 * The implicit messages of each class as XAPI generates them (`datamodel_utils.ml` `messages_of_obj`, filtered by
 * `on_client_side`): `get_all_records`, `get_all`, `get_record`, `get_by_uuid`, `get_by_name_label` (classes with a
 * name_label), `get_<field>` for every field, and for RW fields only `set_<field>`, plus `add_to_<map>` / `remove_from_<map>`
 * and `add_<set>` / `remove_<set>` (not for sets of refs). The explicit setters of the datamodel that follow the same
 * pattern (`VM.add_to_other_config`, `VDI.set_name_label`, ...) are answered the same way. Every mutation is a `mod` event.
 */
export function registerGenericMethods(table: MethodTable): void {
  for (const cls of XAPI_CLASSES) {
    const info = DATAMODEL.classes[cls];
    const methods: Record<string, RpcMethod> = {
      [`${cls}.get_all_records`]: {
        params: [],
        run: ({ pool }) => Object.fromEntries(pool.store.all(cls).map((object) => [object.ref, structuredClone(object.record)])),
      },
      [`${cls}.get_all`]: { params: [], run: ({ pool }) => pool.store.all(cls).map((object) => object.ref) },
      [`${cls}.get_record`]: { params: ["self"], run: ({ pool }, [ref]) => structuredClone(pool.store.record(cls, ref)) },
    };
    const fields = classFields(cls);
    if (fields.includes("uuid")) {
      methods[`${cls}.get_by_uuid`] = { params: ["uuid"], run: ({ pool }, [uuid]) => pool.store.byUuid(cls, uuid).ref };
    }
    if (fields.includes("name_label")) {
      methods[`${cls}.get_by_name_label`] = {
        params: ["label"],
        run: ({ pool }, [label]) =>
          pool.store
            .all(cls)
            .filter((object) => object.record.name_label === label)
            .map((object) => object.ref),
      };
    }
    for (const field of fields) {
      methods[`${cls}.get_${field}`] = { params: ["self"], run: ({ pool }, [ref]) => structuredClone(pool.store.record(cls, ref)[field]) };
    }
    for (const field of info.writable) {
      const type = info.fields[field];
      addAccessor(methods, cls, field, "set");
      if (type.endsWith(" map")) {
        addAccessor(methods, cls, field, "add_to");
        addAccessor(methods, cls, field, "remove_from");
      } else if (type.endsWith(" set") && !type.endsWith(" ref set")) {
        addAccessor(methods, cls, field, "add");
        addAccessor(methods, cls, field, "remove");
      }
    }
    for (const [name, field, accessor] of explicitAccessors(cls, info)) {
      if (name in methods) continue;
      addAccessor(methods, cls, field, accessor);
      // An explicit message is `Async.`-callable unless its ~flags leave `Async out (implicit ones never are).
      const added = methods[name] as RpcMethod;
      if (info.messages[name].async) added.async = true;
    }
    register(table, methods);
  }
}

const ACCESSOR_ARITY: Record<Accessor, number> = { set: 2, add_to: 3, remove_from: 2, add: 2, remove: 2 };

/** The explicit messages of `cls` that are plain accessors of one of its fields, by their name and parameter count. */
function explicitAccessors(cls: XapiClass, info: DatamodelClass): Array<[string, string, Accessor]> {
  const found: Array<[string, string, Accessor]> = [];
  for (const [name, message] of Object.entries(info.messages)) {
    const short = name.slice(cls.length + 1);
    for (const accessor of ["add_to", "remove_from", "set", "add", "remove"] as const) {
      if (!short.startsWith(`${accessor}_`)) continue;
      const field = short.slice(accessor.length + 1);
      const type = info.fields[field];
      if (type === undefined || LAB_MANAGED.has(field) || message.params.length !== ACCESSOR_ARITY[accessor]) continue;
      const fits =
        accessor === "set" || (accessor.endsWith("_to") || accessor === "remove_from" ? type.endsWith(" map") : type.endsWith(" set"));
      if (fits) found.push([name, field, accessor]);
      break;
    }
  }
  return found;
}

function addAccessor(methods: Record<string, RpcMethod>, cls: XapiClass, field: string, accessor: Accessor): void {
  const type = DATAMODEL.classes[cls].fields[field];
  const name = `${cls}.${accessor}_${field}`;
  switch (accessor) {
    case "set":
      methods[name] = {
        params: ["self", "value"],
        run: ({ pool }, [ref, value]) => {
          checkType(cls, field, value);
          pool.store.update(cls, ref, (record) => {
            record[field] = structuredClone(value);
          });
        },
      };
      return;
    case "add_to": {
      const valueType = /^\((.+) -> (.+)\) map$/.exec(type)?.[2] ?? "string";
      methods[name] = {
        params: ["self", "key", "value"],
        run: ({ pool }, [ref, key, value]) => {
          if (typeof key !== "string") throw new XapiFailure("FIELD_TYPE_ERROR", ["key"]);
          checkType(cls, field, value, valueType);
          const record = pool.store.record(cls, ref);
          if (key in (record[field] as XapiRecord)) {
            throw new XapiFailure("MAP_DUPLICATE_KEY", [cls, field, String(record.uuid ?? ref), key]);
          }
          pool.store.update(cls, ref, (target) => {
            target[field] = { ...(target[field] as XapiRecord), [key]: value };
          });
        },
      };
      return;
    }
    case "remove_from":
      methods[name] = {
        params: ["self", "key"],
        run: ({ pool }, [ref, key]) => {
          pool.store.update(cls, ref, (target) => {
            const map = { ...(target[field] as XapiRecord) };
            delete map[String(key)];
            target[field] = map;
          });
        },
      };
      return;
    case "add":
      methods[name] = {
        params: ["self", "value"],
        run: ({ pool }, [ref, value]) => {
          checkType(cls, field, value, type.slice(0, -" set".length));
          pool.store.update(cls, ref, (target) => {
            const set = target[field] as unknown[];
            if (!set.includes(value)) target[field] = [...set, value];
          });
        },
      };
      return;
    case "remove":
      methods[name] = {
        params: ["self", "value"],
        run: ({ pool }, [ref, value]) => {
          pool.store.update(cls, ref, (target) => {
            target[field] = (target[field] as unknown[]).filter((item) => item !== value);
          });
        },
      };
      return;
  }
}
