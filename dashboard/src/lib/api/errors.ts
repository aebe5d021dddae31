/**
 * Error codes the server puts in `extensions.code` (API.md), plus two the client adds itself for failures
 * that never reached GraphQL.
 */
export const ErrorCode = {
  Unauthenticated: "UNAUTHENTICATED",
  Forbidden: "FORBIDDEN",
  BadUserInput: "BAD_USER_INPUT",
  NotFound: "NOT_FOUND",
  Conflict: "CONFLICT",
  Unavailable: "UNAVAILABLE",
  InternalServerError: "INTERNAL_SERVER_ERROR",
  /** The request did not get an answer (server down, connection refused, offline). */
  Network: "NETWORK_ERROR",
  /** The server answered, but not with a GraphQL response (e.g. a proxy's HTML error page). */
  BadResponse: "BAD_RESPONSE",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** One entry of a GraphQL response's `errors`, as far as the dashboard reads it. */
export interface GraphQLErrorEntry {
  message: string;
  path?: readonly (string | number)[];
  extensions?: { code?: string; [key: string]: unknown };
}

/**
 * A failed request. `message` is meant for people: it is the server's message for GraphQL errors (the
 * first one; all of them are in `errors`), or says what went wrong on the way otherwise.
 */
export class ApiError extends Error {
  override name = "ApiError";

  constructor(
    message: string,
    /** `extensions.code` of the first GraphQL error, or one of the client's own codes. */
    readonly code: string,
    /** Every GraphQL error of the response (empty for network and response failures). */
    readonly errors: readonly GraphQLErrorEntry[] = [],
    options?: ErrorOptions & { unreachable?: boolean },
  ) {
    super(message, options);
    this.unreachable = code === ErrorCode.Network || (options?.unreachable ?? false);
  }

  /**
   * Cairn did not answer: no answer at all (NETWORK_ERROR), or a proxy in front of it said it could not reach it (a
   * BAD_RESPONSE of HTTP 502, 503 or 504). Asking again later may work; nothing was wrong with the request.
   */
  readonly unreachable: boolean;
}

/** Whether `error` says the Cairn server could not be reached (see {@link ApiError.unreachable}). */
export function isUnreachable(error: unknown): boolean {
  return error instanceof ApiError && error.unreachable;
}

/** A message to show for anything a request may throw. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error && error.message) return error.message;
  return "Something went wrong, and the error carried no message. Try again, and check the server's log.";
}
