/**
 * The pool database as XAPI dumps it over HTTP (`GET /pool/xmldbdump`) and takes it back (`PUT /pool/xmldbdump`), the
 * way ocaml/xapi/pool_db_backup.ml and Db_xml write and read it: a `<database>` with a `<manifest>` (schema version,
 * generation) and one `<table name="CLASS">` per class, one `<row ref=… />` per object, every field an attribute whose
 * value is a string; sets and maps are S-expressions (`('a' 'b')`, `(('key' 'value'))`), booleans `true`/`false`.
 *
 * Where the lab differs from XAPI, on purpose: columns carry the API's field names (`name_label`, XAPI's database spells
 * namespaced fields `name__label`), since nothing but the lab reads a dump's inside (Cairn keeps it as opaque bytes); and
 * values the datamodel types as nested maps are JSON in the attribute. Tasks and sessions are not dumped (XAPI does not
 * persist them either).
 */
import { type XapiClass, type XapiRecord, defaultRecord, fieldType } from "./class-defaults.js";
import type { ObjectStoreSnapshot } from "./object-store.js";
import { XapiFailure } from "./xapi-failure.js";

/** The schema version the lab's datamodel stands for; a dump of another version is refused as XAPI refuses it. */
export const SCHEMA_MAJOR_VERSION = 5;
export const SCHEMA_MINOR_VERSION = 786;

const NOT_DUMPED = new Set<string>(["task", "session"]);

const XML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" };
const escapeXml = (text: string) => text.replace(/[&<>"']/g, (char) => XML_ESCAPES[char]!);
const escapeSexpr = (text: string) => `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;

function scalarText(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value ?? null);
}

/** One field's value as the attribute text XAPI's database keeps. */
function encodeValue(type: string | undefined, value: unknown): string {
  if (type?.endsWith(" set") && Array.isArray(value)) return `(${value.map((item) => escapeSexpr(scalarText(item))).join(" ")})`;
  if (type?.endsWith(" map") && !type.endsWith(" map) map") && value !== null && typeof value === "object" && !Array.isArray(value)) {
    const pairs = Object.entries(value as Record<string, unknown>).map(
      ([key, item]) => `(${escapeSexpr(key)} ${escapeSexpr(scalarText(item))})`,
    );
    return `(${pairs.join(" ")})`;
  }
  return scalarText(value);
}

/** The database of a pool as XML text (the objects of `snapshot`, tables in a stable order). */
export function databaseXml(snapshot: ObjectStoreSnapshot): string {
  const tables = new Map<string, typeof snapshot.objects>();
  for (const object of snapshot.objects) {
    if (NOT_DUMPED.has(object.cls)) continue;
    const rows = tables.get(object.cls) ?? [];
    rows.push(object);
    tables.set(object.cls, rows);
  }
  const parts = [
    '<?xml version="1.0" encoding="UTF-8"?>\n<database><manifest>',
    `<pair key="schema_major_vsn" value="${SCHEMA_MAJOR_VERSION}"/>`,
    `<pair key="schema_minor_vsn" value="${SCHEMA_MINOR_VERSION}"/>`,
    `<pair key="generation_count" value="${snapshot.generation}"/></manifest>`,
  ];
  for (const cls of [...tables.keys()].sort()) {
    parts.push(`<table name="${escapeXml(cls)}">`);
    for (const { ref, record } of tables.get(cls)!) {
      const attributes = Object.entries(record).map(
        ([field, value]) => ` ${field}="${escapeXml(encodeValue(fieldType(cls as XapiClass, field), value))}"`,
      );
      parts.push(`<row ref="${escapeXml(ref)}"${attributes.join("")}/>`);
    }
    parts.push("</table>");
  }
  parts.push("</database>\n");
  return parts.join("");
}

/** XAPI's answer to a dump it cannot read: the restore fails, nothing changes. */
function unreadable(why: string): XapiFailure {
  return new XapiFailure("INTERNAL_ERROR", [`The database dump cannot be read: ${why}`]);
}

function unescapeXml(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|apos|#x[0-9a-fA-F]+|#[0-9]+);/g, (_match, entity: string) => {
    if (entity.startsWith("#x")) return String.fromCodePoint(Number.parseInt(entity.slice(2), 16));
    if (entity.startsWith("#")) return String.fromCodePoint(Number.parseInt(entity.slice(1), 10));
    return { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" }[entity]!;
  });
}

/** The quoted strings of an S-expression, nested as written (`('a' 'b')` → ["a", "b"]). */
type Sexpr = string | Sexpr[];
function parseSexpr(text: string): Sexpr {
  let at = 0;
  const skipSpaces = () => {
    while (at < text.length && /\s/.test(text[at]!)) at++;
  };
  const value = (): Sexpr => {
    skipSpaces();
    if (text[at] === "(") {
      at++;
      const items: Sexpr[] = [];
      for (skipSpaces(); text[at] !== ")"; skipSpaces()) {
        if (at >= text.length) throw unreadable(`an S-expression is not closed: ${text.slice(0, 80)}`);
        items.push(value());
      }
      at++;
      return items;
    }
    if (text[at] === "'") {
      let out = "";
      for (at++; text[at] !== "'"; at++) {
        if (at >= text.length) throw unreadable(`a quoted string is not closed: ${text.slice(0, 80)}`);
        if (text[at] === "\\") at++;
        out += text[at];
      }
      at++;
      return out;
    }
    throw unreadable(`unexpected text in an S-expression: ${text.slice(at, at + 40)}`);
  };
  const result = value();
  skipSpaces();
  if (at !== text.length) throw unreadable(`text after an S-expression: ${text.slice(at, at + 40)}`);
  return result;
}

function scalarFrom(type: string | undefined, text: string, template: unknown): unknown {
  if (type === "int" || type === "float" || typeof template === "number") {
    const number = Number(text);
    if (!Number.isFinite(number)) throw unreadable(`"${text}" is not a number`);
    return number;
  }
  if (type === "bool" || typeof template === "boolean") {
    if (text !== "true" && text !== "false") throw unreadable(`"${text}" is not true or false`);
    return text === "true";
  }
  if (type !== undefined && !type.startsWith("string") && !type.startsWith("enum") && !type.endsWith(" ref") && type !== "datetime") {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  if (template !== null && typeof template === "object") return JSON.parse(text);
  return text;
}

function decodeValue(cls: XapiClass, field: string, text: string, template: unknown): unknown {
  const type = fieldType(cls, field);
  if (type?.endsWith(" set") || (type === undefined && Array.isArray(template))) {
    const items = parseSexpr(text);
    if (!Array.isArray(items) || items.some((item) => typeof item !== "string")) throw unreadable(`${cls}.${field} is not a set`);
    const element = type?.slice(0, -" set".length);
    return (items as string[]).map((item) => (element === "int" || element === "float" ? Number(item) : item));
  }
  if (
    (type?.endsWith(" map") && !type.endsWith(" map) map")) ||
    (type === undefined && template !== null && typeof template === "object")
  ) {
    const pairs = parseSexpr(text);
    const map: Record<string, unknown> = {};
    if (!Array.isArray(pairs)) throw unreadable(`${cls}.${field} is not a map`);
    const valueType = type?.match(/-> ([^)]+)\) map$/)?.[1];
    for (const pair of pairs) {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
        throw unreadable(`${cls}.${field} is not a map of pairs`);
      }
      map[pair[0]] = valueType === "int" || valueType === "float" ? Number(pair[1]) : pair[1];
    }
    return map;
  }
  return scalarFrom(type, text, template);
}

const ATTRIBUTE = /\s+([A-Za-z_][\w.:-]*)="([^"]*)"/g;

function attributesOf(tag: string): Map<string, string> {
  const attributes = new Map<string, string>();
  for (const match of tag.matchAll(ATTRIBUTE)) attributes.set(match[1]!, unescapeXml(match[2]!));
  return attributes;
}

/**
 * Reads a dump back into objects; refuses another schema version (`RESTORE_INCOMPATIBLE_VERSION`, as XAPI) and a dump it
 * cannot read (no `<database>`, no pool, an unknown class, a value of the wrong type).
 */
export function parseDatabaseXml(xml: string, knownClasses: ReadonlySet<string>): ObjectStoreSnapshot {
  if (!/<database>/.test(xml) || !/<\/database>\s*$/.test(xml)) throw unreadable("it is not an XAPI database dump");
  const manifest = new Map<string, string>();
  for (const pair of xml.matchAll(/<pair\s[^>]*\/>/g)) {
    const attributes = attributesOf(pair[0]);
    manifest.set(attributes.get("key") ?? "", attributes.get("value") ?? "");
  }
  if (
    Number(manifest.get("schema_major_vsn")) !== SCHEMA_MAJOR_VERSION ||
    Number(manifest.get("schema_minor_vsn")) !== SCHEMA_MINOR_VERSION
  ) {
    throw new XapiFailure("RESTORE_INCOMPATIBLE_VERSION", []);
  }
  const generation = Number(manifest.get("generation_count"));
  if (!Number.isSafeInteger(generation) || generation < 0) throw unreadable("its manifest has no generation_count");
  const objects: ObjectStoreSnapshot["objects"] = [];
  for (const table of xml.matchAll(/<table name="([^"]*)"\s*(?:\/>|>([\s\S]*?)<\/table>)/g)) {
    const cls = unescapeXml(table[1]!);
    if (!knownClasses.has(cls)) throw unreadable(`it has a table of an unknown class, ${cls}`);
    for (const row of (table[2] ?? "").matchAll(/<row\s[^>]*\/>/g)) {
      const attributes = attributesOf(row[0]);
      const ref = attributes.get("ref");
      if (ref === undefined || !ref.startsWith("OpaqueRef:")) throw unreadable(`a row of ${cls} has no ref`);
      attributes.delete("ref");
      const template = defaultRecord(cls as XapiClass);
      const record: XapiRecord = {};
      for (const [field, text] of attributes) {
        if (field.startsWith("__")) continue;
        record[field] = decodeValue(cls as XapiClass, field, text, template[field]);
      }
      objects.push({ cls: cls as XapiClass, ref, record });
    }
  }
  if (!objects.some((object) => object.cls === "pool")) throw unreadable("it holds no pool");
  return { generation, objects };
}
