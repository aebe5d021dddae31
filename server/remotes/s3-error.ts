import { RemoteError, describeCause, type RemoteErrorCode } from "./remote-error.js";

/** S3 error names (the `Code` of the XML error, which the AWS SDK puts in `name`) mapped to remote codes. */
const NAMES: Record<string, RemoteErrorCode> = {
  NoSuchKey: "NOT_FOUND",
  NotFound: "NOT_FOUND",
  NoSuchUpload: "NOT_FOUND",
  NoSuchBucket: "NOT_FOUND",
  AccessDenied: "PERMISSION_DENIED",
  Forbidden: "PERMISSION_DENIED",
  InvalidAccessKeyId: "PERMISSION_DENIED",
  SignatureDoesNotMatch: "PERMISSION_DENIED",
  ExpiredToken: "PERMISSION_DENIED",
  AllAccessDisabled: "PERMISSION_DENIED",
  QuotaExceeded: "NO_SPACE",
  EntityTooLarge: "INVALID_ARGUMENT",
  InvalidRange: "INVALID_ARGUMENT",
  TimeoutError: "UNREACHABLE",
  RequestTimeout: "UNREACHABLE",
  // The server refused a body that does not match its checksum (see DIGEST_ERRORS).
  BadDigest: "IO",
  XAmzContentChecksumMismatch: "IO",
  XAmzContentSHA256Mismatch: "IO",
  InvalidDigest: "IO",
};

/**
 * Errors of a server that received bytes not matching the checksum sent with them: damaged on the
 * way (a retry may well succeed), so nothing was stored. InvalidDigest (a malformed checksum) would
 * be a bug of ours and is not retried.
 */
const DIGEST_ERRORS: Record<string, { transient: boolean }> = {
  BadDigest: { transient: true },
  XAmzContentChecksumMismatch: { transient: true },
  XAmzContentSHA256Mismatch: { transient: true },
  InvalidDigest: { transient: false },
};

/** Node network error codes that mean "the server cannot be reached". */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "ECONNABORTED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET",
]);

interface SdkErrorShape {
  name?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
  cause?: unknown;
  errors?: unknown[];
}

function networkCodeOf(error: unknown, depth = 0): string | undefined {
  if (error === null || typeof error !== "object" || depth > 4) return undefined;
  const shape = error as SdkErrorShape;
  if (shape.code !== undefined && NETWORK_CODES.has(shape.code)) return shape.code;
  // Node's AggregateError (happy eyeballs) and wrapped causes hide the real code one level down.
  for (const inner of [shape.cause, ...(shape.errors ?? [])]) {
    const code = networkCodeOf(inner, depth + 1);
    if (code !== undefined) return code;
  }
  return undefined;
}

/** The classification of an S3 (or network) error, without building the error. */
export function classifyS3Error(error: unknown): { code: RemoteErrorCode; transient: boolean; status?: number } {
  const shape = (error ?? {}) as SdkErrorShape;
  const status = shape.$metadata?.httpStatusCode;
  if (networkCodeOf(error) !== undefined) return { code: "UNREACHABLE", transient: true, status };
  const byName = shape.name === undefined ? undefined : NAMES[shape.name];
  const digest = shape.name === undefined ? undefined : DIGEST_ERRORS[shape.name];
  if (byName !== undefined) return { code: byName, transient: byName === "UNREACHABLE" || digest?.transient === true, status };
  if (status === 404) return { code: "NOT_FOUND", transient: false, status };
  if (status === 401 || status === 403) return { code: "PERMISSION_DENIED", transient: false, status };
  if (status === 416) return { code: "INVALID_ARGUMENT", transient: false, status };
  if (status === 429 || (status !== undefined && status >= 500)) return { code: "IO", transient: true, status };
  return { code: "IO", transient: false, status };
}

/**
 * Wraps an AWS SDK (or network) error in a {@link RemoteError}; a `RemoteError` passes through.
 * `secrets` are redacted from the message (the SDK never echoes the secret key, but an endpoint
 * URL could carry one).
 */
export function fromS3Error(
  error: unknown,
  where: { remote: string; operation: string; path?: string; hint?: string; secrets?: readonly (string | undefined)[] },
): RemoteError {
  if (error instanceof RemoteError) return error;
  const { code, transient, status } = classifyS3Error(error);
  const name = (error as SdkErrorShape | undefined)?.name;
  const refused = name !== undefined && DIGEST_ERRORS[name] !== undefined;
  // The SDK's own words for an idle socket name its internals ("@smithy/node-http-handler - the request socket...").
  const idleMs = name === "TimeoutError" ? /after (\d+) ms of inactivity/.exec(describeCause(error))?.[1] : undefined;
  const detail = [
    refused ? "the server refused the bytes it received: they do not match the checksum sent with them" : undefined,
    idleMs === undefined ? name : `the server sent nothing for ${idleMs} ms (idleTimeoutMs)`,
    status === undefined ? undefined : `HTTP ${status}`,
    idleMs === undefined ? describeCause(error) : undefined,
  ]
    .filter((part, index, parts) => part !== undefined && part !== "" && parts.indexOf(part) === index)
    .join(", ");
  const hint =
    where.hint ??
    (refused
      ? "nothing was stored; retry, and if it keeps failing look for what damages data on the way (network, proxy, memory)"
      : undefined) ??
    (name === "NoSuchBucket" ? "create the bucket or fix the bucket name" : undefined) ??
    (code === "PERMISSION_DENIED" ? "check the access key id, the secret key and the bucket policy" : undefined);
  return new RemoteError({ ...where, code, transient, detail, hint, cause: error });
}
