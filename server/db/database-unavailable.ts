/**
 * Whether a thrown value means "the database is not reachable" (refused, reset, shut down, starting up), as opposed to a
 * query that failed on its own: the first is answered UNAVAILABLE and waited out, the second is a bug or a bad input.
 */
import { CairnError, ErrorCode } from "../errors.js";

/** PostgreSQL SQLSTATEs of a server going away or not yet there (class 08 connection exceptions, 57P01-57P03). */
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006"]);
const UNAVAILABLE_ERRNOS = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH"]);
/** Prisma's own codes for an unreachable server or a closed connection. */
const UNAVAILABLE_PRISMA_CODES = new Set(["P1001", "P1002", "P1017", "P2024"]);

export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current: unknown = error, depth = 0; current && depth < 6; depth++) {
    if (current instanceof CairnError) return current.code === ErrorCode.DatabaseUnavailable;
    const { code, cause } = current as { code?: unknown; cause?: unknown };
    if (typeof code === "string" && (UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_ERRNOS.has(code) || UNAVAILABLE_PRISMA_CODES.has(code)))
      return true;
    const message = current instanceof Error ? current.message : "";
    if (/Connection terminated|Can't reach database server|connection is closed|Client has encountered a connection error/i.test(message))
      return true;
    current = cause;
  }
  return false;
}
