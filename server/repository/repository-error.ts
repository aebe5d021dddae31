import { CairnError, ErrorCode } from "../errors.js";

/** Why the repository refused or failed, finer than {@link ErrorCode}. */
export enum RepositoryErrorReason {
  /** Another process holds the VM folder's lock. */
  Locked = "LOCKED",
  /** The metadata was written by a newer Cairn (unknown major `formatVersion`) or an unknown XO `version`. */
  UnsupportedFormatVersion = "UNSUPPORTED_FORMAT_VERSION",
  /** The metadata is not JSON or a field has the wrong type. */
  InvalidMetadata = "INVALID_METADATA",
  /** A backup already exists at this VM and time. */
  AlreadyExists = "ALREADY_EXISTS",
  /** The writer was used out of order (after commit/abort, commit with a write in flight, unknown disk path). */
  WriterState = "WRITER_STATE",
  /** A backup's files are missing or its VHD chain is broken. */
  Incomplete = "INCOMPLETE_BACKUP",
  /** A VHD merge (or an in-place chain read) needs local files and the remote has none. */
  NeedsLocalRemote = "NEEDS_LOCAL_REMOTE",
  /** A file's bytes do not match the checksum recorded when it was written (bit rot, a damaged disk, a bad copy). */
  Damaged = "INTEGRITY_ERROR",
  /** The backup is immutable (its window has not ended): it cannot be removed or changed before then. */
  Immutable = "IMMUTABLE",
}

const CODE_OF: Record<RepositoryErrorReason, ErrorCode> = {
  [RepositoryErrorReason.Locked]: ErrorCode.Conflict,
  [RepositoryErrorReason.UnsupportedFormatVersion]: ErrorCode.BadInput,
  [RepositoryErrorReason.InvalidMetadata]: ErrorCode.BadInput,
  [RepositoryErrorReason.AlreadyExists]: ErrorCode.Conflict,
  [RepositoryErrorReason.WriterState]: ErrorCode.Internal,
  [RepositoryErrorReason.Incomplete]: ErrorCode.NotFound,
  [RepositoryErrorReason.NeedsLocalRemote]: ErrorCode.Unavailable,
  [RepositoryErrorReason.Damaged]: ErrorCode.Integrity,
  [RepositoryErrorReason.Immutable]: ErrorCode.Conflict,
};

/** Every error the repository raises on purpose: a {@link CairnError} with a `reason`; `details.path` names the remote path. */
export class RepositoryError extends CairnError {
  constructor(
    readonly reason: RepositoryErrorReason,
    message: string,
    details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(CODE_OF[reason], `${reason}: ${message}`, { ...details, reason }, options);
    this.name = "RepositoryError";
  }
}

/** Whether a remote operation failed because the file is missing. */
export function isNotFound(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === "NOT_FOUND";
}
