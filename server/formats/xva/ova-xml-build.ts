import type { OvaDocument } from "./ova-document.js";
import { XvaError } from "./xva-error.js";

function escapeXml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => (c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : "&quot;"));
}

function formatDate(date: Date): string {
  // XML-RPC dateTime.iso8601 as XAPI writes it: 20240501T10:20:30Z
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z")
    .replace(/-/g, "");
}

/**
 * One JS value as an XML-RPC `<value>`: strings bare (as XAPI writes them), integers `<int>`, other numbers
 * `<double>`, booleans `<boolean>0|1</boolean>`, Dates `<dateTime.iso8601>`, arrays and plain objects as
 * `<array>`/`<struct>`. null/undefined struct members are left out.
 * @throws XvaError XVA_BAD_INPUT for values XML-RPC cannot carry (functions, bigint, NaN...).
 */
export function toXmlRpcValue(value: unknown, path = "value"): string {
  if (typeof value === "string") return `<value>${escapeXml(value)}</value>`;
  if (typeof value === "boolean") return `<value><boolean>${value ? 1 : 0}</boolean></value>`;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new XvaError("XVA_BAD_INPUT", `${path} is ${value}, which XML-RPC cannot carry`);
    return Number.isInteger(value) ? `<value><int>${value}</int></value>` : `<value><double>${value}</double></value>`;
  }
  if (value instanceof Date) return `<value><dateTime.iso8601>${formatDate(value)}</dateTime.iso8601></value>`;
  if (Array.isArray(value)) {
    return `<value><array><data>${value.map((item, i) => toXmlRpcValue(item, `${path}[${i}]`)).join("")}</data></array></value>`;
  }
  if (value !== null && typeof value === "object") {
    const members = Object.entries(value as Record<string, unknown>)
      .filter(([, member]) => member !== undefined && member !== null)
      .map(([name, member]) => `<member><name>${escapeXml(name)}</name>${toXmlRpcValue(member, `${path}.${name}`)}</member>`);
    return `<value><struct>${members.join("")}</struct></value>`;
  }
  throw new XvaError("XVA_BAD_INPUT", `${path} is a ${typeof value}, which XML-RPC cannot carry`);
}

/** ova.xml for a document: one XML-RPC `<value>` with no prolog, as XAPI's export writes it. */
export function buildOvaXml(doc: OvaDocument): string {
  return toXmlRpcValue({
    version: doc.version,
    objects: doc.objects.map((object) => ({ class: object.class, id: object.id, snapshot: object.snapshot })),
  });
}
