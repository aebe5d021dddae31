/**
 * Every error Cairn raises on purpose. Services throw these; `server/graphql/format-error.ts` maps each code to a GraphQL
 * `extensions.code` in one place. Messages say what was expected, what was received and what to do; they never hold a secret.
 */
export enum ErrorCode {
  Unauthenticated = "UNAUTHENTICATED",
  Forbidden = "FORBIDDEN",
  BadInput = "BAD_USER_INPUT",
  NotFound = "NOT_FOUND",
  Conflict = "CONFLICT",
  Unavailable = "UNAVAILABLE",
  DatabaseUnavailable = "DATABASE_UNAVAILABLE",
  InvalidConfig = "INVALID_CONFIG",
  Internal = "INTERNAL",
  /** Stored bytes do not match the checksum recorded when they were written: damaged, never used as they are. */
  Integrity = "INTEGRITY",
  /** Too many attempts (sign-in): `details.retryAfterSeconds` says when to try again. */
  RateLimited = "RATE_LIMITED",
}

export class CairnError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "CairnError";
  }
}

/** An input value was refused; `field` is the dotted path of the input field (e.g. `input.schedules.0.cron`). */
export class InputError extends CairnError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(ErrorCode.BadInput, `${field}: ${message}`, { field });
    this.name = "InputError";
  }
}

export function notFound(what: string, id: string): CairnError {
  return new CairnError(ErrorCode.NotFound, `No ${what} with id ${id}.`, { id });
}

/**
 * The text a thrown value leaves for a person (a task, a run, a log line, a `problems` entry): its own message, never a
 * stack. The one error-to-text helper: callers that decide on an error read its class and code, never this text.
 */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === "string") return error;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    // Not serialisable (a cycle): the plain string form is all that can be said.
    return String(error);
  }
}
