import { classByLowerName, defaultRecord, isXapiClass } from "./class-defaults.js";
import { XmlRpcDateTime, XmlRpcDouble, XmlRpcInt32 } from "./xmlrpc-codec.js";

/**
 * The lab keeps records as JSON-RPC shows them: ints, floats and datetimes are plain numbers and strings there, but
 * XML-RPC tells them apart (ints are strings of digits, floats `<double>`, datetimes `<dateTime.iso8601>`). The
 * datamodel's types are what decides, so the fields that are not ints or strings are listed here, per class, from
 * xapi-project/xen-api `ocaml/idl/datamodel*.ml` (`~ty:Float`, `~ty:DateTime`, `~ty:(Map (Int, Float))`).
 */
const FLOAT_FIELDS: Record<string, readonly string[]> = {
  task: ["progress"],
  vm: ["HVM_shadow_multiplier"],
  host_cpu: ["utilisation"],
  vbd_metrics: ["io_read_kbs", "io_write_kbs"],
  pif_metrics: ["io_read_kbs", "io_write_kbs"],
  vif_metrics: ["io_read_kbs", "io_write_kbs"],
  data_source: ["min", "max", "value"],
};
const FLOAT_MAP_FIELDS: Record<string, readonly string[]> = { vm_metrics: ["VCPUs_utilisation"] };
const DATETIME_FIELDS: Record<string, readonly string[]> = {
  task: ["created", "finished"],
  vm: ["snapshot_time"],
  vdi: ["snapshot_time"],
  message: ["timestamp"],
  session: ["last_active", "validation_time"],
  host: ["last_software_update", "ssh_expiry"],
  pool: ["telemetry_next_collection", "last_update_sync"],
  vm_metrics: ["start_time", "install_time", "last_updated"],
  vm_guest_metrics: ["last_updated"],
  host_metrics: ["last_updated"],
  pif_metrics: ["last_updated"],
  vbd_metrics: ["last_updated"],
  vif_metrics: ["last_updated"],
};

const XAPI_DATE = /^\d{8}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:?\d{2})?$/;

type FieldKind = "float" | "float_map" | "datetime" | "plain";
const kindCache = new Map<string, FieldKind>();

/**
 * A field's wire kind: from the tables above, and for the lab's classes also from the default record (a field whose
 * default is an XAPI date is a datetime), so that datetime fields added to class-defaults.ts are typed without an
 * entry here.
 */
function fieldKind(cls: string, field: string): FieldKind {
  const lower = cls.toLowerCase();
  const key = `${lower}.${field}`;
  const cached = kindCache.get(key);
  if (cached !== undefined) return cached;
  let kind: FieldKind = "plain";
  if (FLOAT_FIELDS[lower]?.includes(field)) kind = "float";
  else if (FLOAT_MAP_FIELDS[lower]?.includes(field)) kind = "float_map";
  else if (DATETIME_FIELDS[lower]?.includes(field)) kind = "datetime";
  else {
    const name = classByLowerName(lower);
    const fallback = name !== undefined && isXapiClass(name) ? defaultRecord(name)[field] : undefined;
    if (typeof fallback === "string" && XAPI_DATE.test(fallback)) kind = "datetime";
  }
  kindCache.set(key, kind);
  return kind;
}

function typedField(cls: string, field: string, value: unknown): unknown {
  switch (fieldKind(cls, field)) {
    case "float":
      return typeof value === "number" ? new XmlRpcDouble(value) : value;
    case "datetime":
      return typeof value === "string" ? new XmlRpcDateTime(value) : value;
    case "float_map":
      if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
      return Object.fromEntries(
        Object.entries(value).map(([key, item]) => [key, typeof item === "number" ? new XmlRpcDouble(item) : item]),
      );
    default:
      return value;
  }
}

function typedRecord(cls: string, record: unknown): unknown {
  if (typeof record !== "object" || record === null || Array.isArray(record)) return record;
  return Object.fromEntries(Object.entries(record).map(([field, value]) => [field, typedField(cls, field, value)]));
}

function typedEventFrom(result: unknown): unknown {
  if (typeof result !== "object" || result === null) return result;
  const { events, valid_ref_counts: counts, ...rest } = result as { events?: unknown; valid_ref_counts?: unknown };
  const typedEvents = Array.isArray(events)
    ? events.map((event: Record<string, unknown>) =>
        event.snapshot === undefined ? event : { ...event, snapshot: typedRecord(String(event.class), event.snapshot) },
      )
    : events;
  // XAPI sends these counts as `int32`, the one place it writes `<i4>` (event_types.ml).
  const typedCounts =
    typeof counts === "object" && counts !== null
      ? Object.fromEntries(Object.entries(counts).map(([cls, count]) => [cls, typeof count === "number" ? new XmlRpcInt32(count) : count]))
      : counts;
  return { events: typedEvents, valid_ref_counts: typedCounts, ...rest };
}

/**
 * A method's result with the XML-RPC types XAPI would give it: records from `get_record`, `get_all_records`,
 * `get_<field>` and `event.from` snapshots have their float and datetime fields marked; everything else is
 * written as it is (ints as digit strings, strings, booleans, sets, maps).
 */
export function xmlRpcTypedResult(method: string, result: unknown): unknown {
  if (method.startsWith("Async.")) return result;
  const dot = method.indexOf(".");
  if (dot === -1) return result;
  const cls = method.slice(0, dot);
  const call = method.slice(dot + 1);
  if (cls === "event" && call === "from") return typedEventFrom(result);
  if (call === "get_record") return typedRecord(cls, result);
  if (call === "get_all_records" && typeof result === "object" && result !== null) {
    return Object.fromEntries(Object.entries(result).map(([ref, record]) => [ref, typedRecord(cls, record)]));
  }
  if (call.startsWith("get_")) return typedField(cls, call.slice(4), result);
  return result;
}

/**
 * XML-RPC clients send 64-bit ints as strings of digits (the convention XAPI documents and its own
 * `int64_of_rpc` accepts). The lab's methods take numbers, so `set_<field>` of an int field gets its digits
 * turned into a number here.
 */
export function jsonLikeParams(method: string, params: unknown[]): unknown[] {
  const match = /^([A-Za-z_]+)\.set_(\w+)$/.exec(method);
  if (match === null || params.length !== 3 || typeof params[2] !== "string" || !/^[+-]?\d+$/.test(params[2])) return params;
  const cls = classByLowerName(match[1]);
  if (cls === undefined || !isXapiClass(cls)) return params;
  const fallback = defaultRecord(cls)[match[2]];
  if (typeof fallback !== "number" || fieldKind(cls, match[2]) !== "plain") return params;
  return [params[0], params[1], Number(params[2])];
}
