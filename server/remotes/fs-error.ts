import { RemoteError, describeCause, type RemoteErrorCode } from "./remote-error.js";

/** Node system error codes (errno names) mapped to remote error codes, for remotes backed by a file system. */
const CODES: Record<string, { code: RemoteErrorCode; transient?: boolean }> = {
  ENOENT: { code: "NOT_FOUND" },
  EEXIST: { code: "ALREADY_EXISTS" },
  ENOTEMPTY: { code: "ALREADY_EXISTS" },
  EISDIR: { code: "ALREADY_EXISTS" },
  ENOTDIR: { code: "ALREADY_EXISTS" },
  EACCES: { code: "PERMISSION_DENIED" },
  EPERM: { code: "PERMISSION_DENIED" },
  EROFS: { code: "PERMISSION_DENIED" },
  ENOSPC: { code: "NO_SPACE" },
  EDQUOT: { code: "NO_SPACE" },
  EFBIG: { code: "NO_SPACE" },
  ENAMETOOLONG: { code: "INVALID_PATH" },
  ESTALE: { code: "UNREACHABLE" },
  ENOTCONN: { code: "UNREACHABLE" },
  EHOSTDOWN: { code: "UNREACHABLE" },
  ETIMEDOUT: { code: "UNREACHABLE" },
  EAGAIN: { code: "IO", transient: true },
  EBUSY: { code: "IO", transient: true },
  EMFILE: { code: "IO", transient: true },
  ENFILE: { code: "IO", transient: true },
  EINTR: { code: "IO", transient: true },
};

/** What to say for the codes where the generic hint would mislead. */
const HINTS: Record<string, string> = {
  ENOTDIR: "a file is where a folder is needed: remove or rename it",
  EISDIR: "a folder is where a file is needed: remove or rename it",
  ENOTEMPTY: "a non-empty folder is in the way: remove or rename it",
  EROFS: "the file system is mounted read-only: remount it read-write",
  ENOENT: "check the path, or whether something else deleted it",
};

/**
 * Wraps a Node file-system error in a {@link RemoteError}. A `RemoteError` passes through unchanged;
 * anything unknown becomes IO with the original as `cause`.
 */
export function fromFsError(error: unknown, where: { remote: string; operation: string; path?: string; hint?: string }): RemoteError {
  if (error instanceof RemoteError) return error;
  const errno = (error as NodeJS.ErrnoException | undefined)?.code ?? "";
  const mapped = CODES[errno] ?? { code: "IO" as const };
  return new RemoteError({
    code: mapped.code,
    transient: mapped.transient,
    remote: where.remote,
    operation: where.operation,
    path: where.path,
    detail: describeCause(error),
    hint: where.hint ?? HINTS[errno],
    cause: error,
  });
}
