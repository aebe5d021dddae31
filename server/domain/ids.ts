import { CairnError, ErrorCode } from "../errors.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** Ids are UUIDs: anything else is a clear NOT_FOUND naming what was looked for, rather than a database error. */
export function validUuid(id: string, what: string): string {
  if (!isUuid(id)) throw new CairnError(ErrorCode.NotFound, `No ${what} with id ${JSON.stringify(String(id)).slice(0, 60)}.`);
  return id.toLowerCase();
}
