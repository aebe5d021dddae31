/** XAPI records as metadata stores them: the plain fields, without the client's `$`-prefixed helpers. */
import type { XapiRecord } from "./pool-connection.js";

export function plainRecord(record: XapiRecord | undefined): Record<string, unknown> {
  if (!record) return {};
  return Object.fromEntries(Object.entries(record).filter(([key, value]) => !key.startsWith("$") && typeof value !== "function"));
}
