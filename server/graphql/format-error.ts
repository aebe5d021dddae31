/**
 * The one place where errors become what a client sees. A CairnError keeps its message and gets its code; a GraphQL
 * validation or syntax error stays as graphql-js worded it; anything else (a bug, a database error) is logged in full on the
 * server and reaches the client as INTERNAL_SERVER_ERROR with a reference, never with a stack trace, SQL or a secret.
 */
import { randomUUID } from "node:crypto";
import { unwrapResolverError } from "@apollo/server/errors";
import { GraphQLError, type GraphQLFormattedError } from "graphql";
import { CairnError, ErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import { isDatabaseUnavailable } from "../db/database-unavailable.js";
import { isRemoteError } from "../remotes/remote-error.js";
import { PoolNotConnectedError } from "../xapi/pool-connection.js";
import { QueryTooLargeError } from "./query-limits.js";

const API_CODES: Record<ErrorCode, string> = {
  [ErrorCode.Unauthenticated]: "UNAUTHENTICATED",
  [ErrorCode.Forbidden]: "FORBIDDEN",
  [ErrorCode.BadInput]: "BAD_USER_INPUT",
  [ErrorCode.NotFound]: "NOT_FOUND",
  [ErrorCode.Conflict]: "CONFLICT",
  [ErrorCode.Unavailable]: "UNAVAILABLE",
  [ErrorCode.DatabaseUnavailable]: "UNAVAILABLE",
  [ErrorCode.InvalidConfig]: "BAD_USER_INPUT",
  [ErrorCode.Internal]: "INTERNAL_SERVER_ERROR",
  [ErrorCode.Integrity]: "INTEGRITY_ERROR",
  [ErrorCode.RateLimited]: "RATE_LIMITED",
};

/** Codes graphql-js and Apollo give to malformed requests: passed through as they are. */
const REQUEST_CODES = new Set([
  "GRAPHQL_PARSE_FAILED",
  "GRAPHQL_VALIDATION_FAILED",
  "BAD_USER_INPUT",
  "BAD_REQUEST",
  "PERSISTED_QUERY_NOT_FOUND",
  "PERSISTED_QUERY_NOT_SUPPORTED",
  "OPERATION_RESOLUTION_FAILURE",
]);

/** The `extensions.code` a thrown value is answered with (the audit log records the same code the client saw). */
export function apiCodeOf(error: unknown): string {
  const original = unwrapResolverError(error);
  if (original instanceof CairnError) return API_CODES[original.code];
  if (isRemoteError(original)) {
    return original.code === "NOT_FOUND"
      ? "NOT_FOUND"
      : original.code === "INVALID_CONFIG" || original.code === "INVALID_PATH"
        ? "BAD_USER_INPUT"
        : "UNAVAILABLE";
  }
  if (original instanceof PoolNotConnectedError) return "UNAVAILABLE";
  if (isDatabaseUnavailable(original)) return "UNAVAILABLE";
  const code = original instanceof GraphQLError ? original.extensions?.code : undefined;
  return typeof code === "string" ? code : "INTERNAL_SERVER_ERROR";
}

export function createErrorFormatter(log: Logger) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = unwrapResolverError(error);
    const base = { message: formatted.message, locations: formatted.locations, path: formatted.path };
    if (original instanceof CairnError) {
      const { field, fields, retryAfterSeconds, runId } = original.details;
      return {
        ...base,
        message: original.message,
        extensions: {
          code: API_CODES[original.code],
          ...(field ? { field } : {}),
          // Several refused fields of one input at once (job-input.ts): each with its message, for forms.
          ...(Array.isArray(fields) ? { fields } : {}),
          ...(typeof retryAfterSeconds === "number" ? { retryAfterSeconds } : {}),
          // The run a CONFLICT is about (the job's run still going), for a link: never read out of the message.
          ...(typeof runId === "string" ? { runId } : {}),
        },
      };
    }
    if (isRemoteError(original)) {
      const code =
        original.code === "NOT_FOUND"
          ? "NOT_FOUND"
          : original.code === "INVALID_CONFIG" || original.code === "INVALID_PATH"
            ? "BAD_USER_INPUT"
            : "UNAVAILABLE";
      return { ...base, message: original.message, extensions: { code } };
    }
    if (original instanceof PoolNotConnectedError) {
      return { ...base, message: original.message, extensions: { code: "UNAVAILABLE" } };
    }
    if (isDatabaseUnavailable(original)) {
      return {
        ...base,
        message: "The database is not reachable right now; Cairn is reconnecting. Try again in a few seconds.",
        extensions: { code: "UNAVAILABLE" },
      };
    }
    const code = formatted.extensions?.code;
    if (original instanceof QueryTooLargeError || formatted.extensions?.tooLarge) {
      return { ...base, extensions: { code: "BAD_USER_INPUT" } };
    }
    // A parser or validator that ran out of stack words it "Maximum call stack size exceeded": an engine's words, not ours.
    if (typeof code === "string" && REQUEST_CODES.has(code) && hasRangeErrorCause(original)) {
      return { ...base, message: "The request could not be read: it is nested too deeply.", extensions: { code } };
    }
    if (typeof code === "string" && REQUEST_CODES.has(code)) return { ...base, extensions: { code } };
    // Apollo refuses some malformed requests (an unsupported persisted-query version, a hash that does not match its query)
    // with an HTTP 4xx and no code: they are the client's mistake, worded by Apollo for a client.
    const status = original instanceof GraphQLError ? (original.extensions?.http as { status?: number } | undefined)?.status : undefined;
    if (original instanceof GraphQLError && original.extensions?.code === undefined && status && status >= 400 && status < 500) {
      return { ...base, extensions: { code: "BAD_REQUEST" } };
    }
    // A bearer token refused while building the context (server/http/http-server.ts) arrives as a GraphQLError, not a CairnError.
    if (code === "UNAUTHENTICATED" && original instanceof GraphQLError) return { ...base, extensions: { code } };
    const reference = randomUUID();
    log.error({ err: original, reference, path: formatted.path }, "unexpected error in a GraphQL operation");
    return {
      ...base,
      message: `Internal error (reference ${reference}); the details are in the server log.`,
      extensions: { code: "INTERNAL_SERVER_ERROR", reference },
    };
  };
}

/**
 * Formats errors produced outside Apollo (graphql-ws) with the same formatter. graphql-ws wraps what a subscription's source
 * throws in a GraphQLError without a path: the thrown value underneath is what decides the code.
 */
export function formatErrorsOutsideApollo(
  format: ReturnType<typeof createErrorFormatter>,
  errors: readonly GraphQLError[],
): GraphQLFormattedError[] {
  return errors.map((error) => {
    const cause = error.originalError;
    const original = !error.path && cause && !(cause instanceof GraphQLError) ? cause : error;
    return format(error.toJSON(), original);
  });
}

function hasRangeErrorCause(error: unknown): boolean {
  for (let current = error, hops = 0; current && hops < 10; hops++) {
    if (current instanceof RangeError) return true;
    current = current instanceof GraphQLError ? current.originalError : current instanceof Error ? current.cause : undefined;
  }
  return false;
}
