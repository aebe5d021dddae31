/**
 * The one error type every remote throws. A caller decides what to do from `code` and `transient`
 * alone; the message is for people: it names the remote, the operation and the path, and says what
 * to do. No credential ever appears in it (see {@link redactSecrets}).
 */
import { messageOf } from "../errors.js";

/** What went wrong, independent of the kind of remote. */
export type RemoteErrorCode =
  /** The file (or the remote's folder or bucket) does not exist. */
  | "NOT_FOUND"
  /** Something is in the way: a file where a folder is needed, a folder where a file is needed. */
  | "ALREADY_EXISTS"
  /** The remote refused: file permissions, a read-only mount, wrong or missing credentials. */
  | "PERMISSION_DENIED"
  /** The storage is full (or a quota is reached). */
  | "NO_SPACE"
  /** The remote cannot be reached: connection refused, DNS failure, time-out, stale mount. */
  | "UNREACHABLE"
  /** A path inside the remote is not a clean relative POSIX path (see `remote-path.ts`). */
  | "INVALID_PATH"
  /** An argument other than a path is out of range: a byte range, a length, a size. */
  | "INVALID_ARGUMENT"
  /** The remote's configuration is wrong or names something this build cannot do. */
  | "INVALID_CONFIG"
  /**
   * Encrypted remotes: stored bytes do not authenticate (changed, damaged, cut, reordered, or written with another key).
   * No byte of what failed is ever returned.
   */
  | "INTEGRITY"
  /** Encrypted remotes: the key or passphrase given is not the one the remote was encrypted with (its key check file says so). */
  | "WRONG_KEY"
  /** Any other input/output failure. */
  | "IO";

/** Codes that are worth retrying by default: the same call may succeed a moment later. */
const TRANSIENT_BY_DEFAULT: ReadonlySet<RemoteErrorCode> = new Set(["UNREACHABLE"]);

/** What to tell a person for each code, unless the thrower knows better. */
const DEFAULT_HINTS: Record<RemoteErrorCode, string> = {
  NOT_FOUND: "check the path, or whether something else deleted it",
  ALREADY_EXISTS: "remove or rename what is in the way",
  PERMISSION_DENIED: "check the credentials and that the remote is writable by the Cairn process",
  NO_SPACE: "free some space on the remote or lower the retention",
  UNREACHABLE: "check the address, the network and that the storage server is running",
  INVALID_PATH: "use a relative path with '/' separators and no '..', '.', empty or NUL parts",
  INVALID_ARGUMENT: "this is a bug in the caller: report it",
  INVALID_CONFIG: "fix the remote's settings",
  INTEGRITY: "restore the file from another copy, or check that nothing but Cairn writes to this remote",
  WRONG_KEY: "give the key or passphrase this remote was encrypted with",
  IO: "look at the cause; retry once the storage is healthy",
};

/** Everything a {@link RemoteError} is built from. */
export interface RemoteErrorInit {
  code: RemoteErrorCode;
  /** Which remote, as {@link Remote.name} says it (never containing a secret). */
  remote: string;
  /** The operation that failed, as a verb phrase: "read", "write", "list", "connect to". */
  operation: string;
  /** The path inside the remote, when there is one. */
  path?: string;
  /** What happened, in a few words. */
  detail: string;
  /**
   * INVALID_CONFIG from checking a configuration: its faulty field (`location`, `username`, `options.region`... of
   * `RemoteConfig`, create-remote.ts), so a caller can point at it without reading the message.
   */
  field?: string;
  /** What to do; a default per code is used when absent. */
  hint?: string;
  /** Overrides the default (true only for UNREACHABLE). */
  transient?: boolean;
  /** The underlying error (a Node system error, an AWS SDK error, ...). */
  cause?: unknown;
  /** Strings that must not appear in the message (passwords, secret keys); replaced by "***". */
  secrets?: readonly (string | undefined)[];
}

/**
 * A failure of a remote operation.
 *
 * - `code`: what went wrong (see {@link RemoteErrorCode}).
 * - `transient`: whether retrying the same call may help; only a retry wrapper acts on it.
 * - `remote`, `operation`, `path`: where.
 * - `field`: for a refused configuration, the faulty field of the configuration (absent otherwise).
 * - `cause`: the original error, kept for logs (its own message may be longer than ours).
 */
export class RemoteError extends Error {
  readonly code: RemoteErrorCode;
  readonly transient: boolean;
  readonly remote: string;
  readonly operation: string;
  readonly path?: string;
  readonly field?: string;
  /** What happened, in a few words (no code, no path): for a message that names the remote its own way. */
  readonly detail: string;

  constructor(init: RemoteErrorInit) {
    const where = init.path === undefined ? "" : ` "${init.path}"`;
    const hint = init.hint ?? DEFAULT_HINTS[init.code];
    const message = `${init.code}: could not ${init.operation}${where} on ${init.remote}: ${init.detail}; ${hint}`;
    super(redactSecrets(message, init.secrets ?? []), init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "RemoteError";
    this.code = init.code;
    this.transient = init.transient ?? TRANSIENT_BY_DEFAULT.has(init.code);
    this.remote = init.remote;
    this.operation = init.operation;
    this.path = init.path;
    this.field = init.field;
    this.detail = redactSecrets(init.detail, init.secrets ?? []);
  }
}

/** Whether `error` is a {@link RemoteError}, optionally with the given code. */
export function isRemoteError(error: unknown, code?: RemoteErrorCode): error is RemoteError {
  return error instanceof RemoteError && (code === undefined || error.code === code);
}

/** Replaces every occurrence of each non-trivial secret in `text` with "***". */
export function redactSecrets(text: string, secrets: readonly (string | undefined)[]): string {
  let result = text;
  for (const secret of secrets) {
    // A one- or two-character "secret" would mangle every message; such a secret is worthless anyway.
    if (secret !== undefined && secret.length >= 3) result = result.split(secret).join("***");
  }
  return result;
}

/** The text of anything thrown, for a `detail` ({@link messageOf}), led by its system error code when the text lacks it. */
export function describeCause(cause: unknown): string {
  const text = messageOf(cause);
  const code = cause instanceof Error ? (cause as NodeJS.ErrnoException).code : undefined;
  return typeof code === "string" && !text.includes(code) ? `${code} ${text}` : text;
}
