import { randomUUID } from "node:crypto";

/** XAPI's null reference. */
export const NULL_REF = "OpaqueRef:NULL";

/** A fresh opaque reference, `OpaqueRef:<uuid v4>` as XAPI makes them. */
export function newRef(): string {
  return `OpaqueRef:${randomUUID()}`;
}

export function newUuid(): string {
  return randomUUID();
}

/** XAPI's datetime on the JSON-RPC wire: `YYYYMMDDTHH:MM:SSZ`. */
export function xapiDate(date: Date = new Date()): string {
  const iso = date.toISOString(); // 2024-01-01T12:00:00.000Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 19)}Z`;
}

export const EPOCH_DATE = "19700101T00:00:00Z";

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * The XML-RPC encoding XAPI stores in `task.result` (`Xmlrpc.to_string`): compact, strings and ints as
 * bare `<value>text</value>`, floats as `<double>`, booleans as `<boolean>`, sets as arrays, maps as structs.
 * `undefined`/`null`/`""` (void) is `<value></value>`.
 */
export function toXmlRpcValue(value: unknown): string {
  if (value === undefined || value === null) return "<value></value>";
  if (typeof value === "string") return `<value>${escapeXml(value)}</value>`;
  if (typeof value === "number") {
    return Number.isInteger(value) ? `<value>${value}</value>` : `<value><double>${value}</double></value>`;
  }
  if (typeof value === "boolean") return `<value><boolean>${value ? 1 : 0}</boolean></value>`;
  if (Array.isArray(value)) return `<value><array><data>${value.map(toXmlRpcValue).join("")}</data></array></value>`;
  if (typeof value === "object") {
    const members = Object.entries(value as Record<string, unknown>)
      .map(([key, member]) => `<member><name>${escapeXml(key)}</name>${toXmlRpcValue(member)}</member>`)
      .join("");
    return `<value><struct>${members}</struct></value>`;
  }
  return `<value>${escapeXml(String(value))}</value>`;
}
