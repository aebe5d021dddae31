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

/** Kinds of Prisma's driver adapter errors (`meta.driverAdapterError.cause.kind`) that mean the server is not there. */
const UNAVAILABLE_ADAPTER_KINDS = new Set(["DatabaseNotReachable", "ConnectionClosed", "SocketTimeout"]);

export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current: unknown = error, depth = 0; current && depth < 8; depth++) {
    if (current instanceof CairnError) return current.code === ErrorCode.DatabaseUnavailable;
    const { code, syscall, kind, cause, originalError, meta } = current as {
      code?: unknown;
      syscall?: unknown;
      kind?: unknown;
      cause?: unknown;
      originalError?: unknown;
      meta?: { driverAdapterError?: unknown };
    };
    if (typeof code === "string" && (UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_ERRNOS.has(code) || UNAVAILABLE_PRISMA_CODES.has(code)))
      return true;
    // Over a Unix socket (the embedded server), a stopped server has removed its socket file: connect(2) says ENOENT
    // (Prisma keeps the code and the message, not the syscall).
    if (code === "ENOENT" && (syscall === "connect" || /\bconnect ENOENT\b/.test(current instanceof Error ? current.message : "")))
      return true;
    if (typeof kind === "string" && UNAVAILABLE_ADAPTER_KINDS.has(kind)) return true;
    const message = current instanceof Error ? current.message : "";
    if (
      /Connection terminated|Can't reach database server|connection is closed|Server has closed the connection|Client has encountered a connection error/i.test(
        message,
      )
    )
      return true;
    // Prisma 7 keeps the driver's error (with its SQLSTATE, e.g. 57P01 "terminating connection due to unexpected postmaster
    // exit") under meta.driverAdapterError, not as the cause; Apollo wraps an error thrown while building the context (the
    // bearer token's lookup) in a GraphQLError whose originalError it is.
    current = cause ?? originalError ?? meta?.driverAdapterError;
  }
  return false;
}
