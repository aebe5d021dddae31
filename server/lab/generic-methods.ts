import { classFields, defaultRecord, XAPI_CLASSES, type XapiClass, type XapiRecord } from "./class-defaults.js";
import { register, type MethodTable, type RpcMethod } from "./rpc-method.js";
import { XapiFailure } from "./xapi-failure.js";

// Fields no client may set directly: identities, links maintained by the lab, and state changed only by
// operations (power_state by VM.start, virtual_size by VDI.resize, ...).
const READ_ONLY_FIELDS = new Set([
  "uuid",
  "allowed_operations",
  "current_operations",
  "power_state",
  "is_a_snapshot",
  "snapshot_of",
  "snapshots",
  "snapshot_time",
  "VBDs",
  "VIFs",
  "VDIs",
  "PBDs",
  "resident_VMs",
  "resident_on",
  "virtual_size",
  "physical_utilisation",
  "SR",
  "VM",
  "VDI",
  "status",
  "created",
  "finished",
  "result",
  "error_info",
  "is_control_domain",
  "parent",
  "children",
  "master",
  "domid",
  "currently_attached",
  "location",
  "subtasks",
  "virtual_allocation",
  "physical_size",
]);

function kindOf(value: unknown): "string" | "number" | "boolean" | "set" | "map" {
  if (Array.isArray(value)) return "set";
  if (typeof value === "object" && value !== null) return "map";
  return typeof value as "string" | "number" | "boolean";
}

function checkType(cls: XapiClass, field: string, value: unknown): void {
  const expected = kindOf(defaultRecord(cls)[field]);
  const ok =
    expected === "map"
      ? typeof value === "object" && value !== null && !Array.isArray(value) && Object.values(value).every((v) => typeof v === "string")
      : expected === "set"
        ? Array.isArray(value)
        : typeof value === expected;
  if (!ok) throw new XapiFailure("FIELD_TYPE_ERROR", [field]);
}

/**
 * The implicit per-class methods: `get_all_records`, `get_record`, `get_all`, `get_by_uuid`,
 * `get_by_name_label`, `get_<field>`, and for writable fields `set_<field>`, `add_to_<map>` /
 * `remove_from_<map>` and `add_<set>` / `remove_<set>`. Every mutation is a `mod` event.
 */
export function registerGenericMethods(table: MethodTable): void {
  for (const cls of XAPI_CLASSES) {
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
      if (READ_ONLY_FIELDS.has(field) || cls === "message") continue;
      const kind = kindOf(defaultRecord(cls)[field]);
      methods[`${cls}.set_${field}`] = {
        params: ["self", "value"],
        run: ({ pool }, [ref, value]) => {
          checkType(cls, field, value);
          pool.store.update(cls, ref, (record) => {
            record[field] = structuredClone(value);
          });
        },
      };
      if (kind === "map") addMapMethods(methods, cls, field);
      if (kind === "set") addSetMethods(methods, cls, field);
    }
    register(table, methods);
  }
}

function addMapMethods(methods: Record<string, RpcMethod>, cls: XapiClass, field: string): void {
  methods[`${cls}.add_to_${field}`] = {
    params: ["self", "key", "value"],
    run: ({ pool }, [ref, key, value]) => {
      if (typeof key !== "string" || typeof value !== "string") throw new XapiFailure("FIELD_TYPE_ERROR", [field]);
      const record = pool.store.record(cls, ref);
      if (key in (record[field] as XapiRecord)) {
        throw new XapiFailure("MAP_DUPLICATE_KEY", [cls, field, String(record.uuid), key]);
      }
      pool.store.update(cls, ref, (target) => {
        target[field] = { ...(target[field] as XapiRecord), [key]: value };
      });
    },
  };
  methods[`${cls}.remove_from_${field}`] = {
    params: ["self", "key"],
    run: ({ pool }, [ref, key]) => {
      pool.store.update(cls, ref, (target) => {
        const map = { ...(target[field] as XapiRecord) };
        delete map[String(key)];
        target[field] = map;
      });
    },
  };
}

function addSetMethods(methods: Record<string, RpcMethod>, cls: XapiClass, field: string): void {
  methods[`${cls}.add_${field}`] = {
    params: ["self", "value"],
    run: ({ pool }, [ref, value]) => {
      pool.store.update(cls, ref, (target) => {
        const set = target[field] as unknown[];
        if (!set.includes(value)) target[field] = [...set, value];
      });
    },
  };
  methods[`${cls}.remove_${field}`] = {
    params: ["self", "value"],
    run: ({ pool }, [ref, value]) => {
      pool.store.update(cls, ref, (target) => {
        target[field] = (target[field] as unknown[]).filter((item) => item !== value);
      });
    },
  };
}
