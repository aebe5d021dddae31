/** NT status values (MS-ERREF 2.3.1) this client meets or names, and the error carrying one. */

export const STATUS = {
  SUCCESS: 0x00000000,
  PENDING: 0x00000103,
  BUFFER_OVERFLOW: 0x80000005,
  NO_MORE_FILES: 0x80000006,
  MORE_PROCESSING_REQUIRED: 0xc0000016,
  END_OF_FILE: 0xc0000011,
} as const;

const NAMES: Record<number, string> = {
  259: "STATUS_PENDING",
  2147483653: "STATUS_BUFFER_OVERFLOW",
  2147483654: "STATUS_NO_MORE_FILES",
  3221225473: "STATUS_UNSUCCESSFUL",
  3221225474: "STATUS_NOT_IMPLEMENTED",
  3221225475: "STATUS_INVALID_INFO_CLASS",
  3221225480: "STATUS_INVALID_HANDLE",
  3221225485: "STATUS_INVALID_PARAMETER",
  3221225487: "STATUS_NO_SUCH_FILE",
  3221225488: "STATUS_INVALID_DEVICE_REQUEST",
  3221225489: "STATUS_END_OF_FILE",
  3221225494: "STATUS_MORE_PROCESSING_REQUIRED",
  3221225506: "STATUS_ACCESS_DENIED",
  3221225507: "STATUS_BUFFER_TOO_SMALL",
  3221225523: "STATUS_OBJECT_NAME_INVALID",
  3221225524: "STATUS_OBJECT_NAME_NOT_FOUND",
  3221225525: "STATUS_OBJECT_NAME_COLLISION",
  3221225530: "STATUS_OBJECT_PATH_NOT_FOUND",
  3221225531: "STATUS_OBJECT_PATH_SYNTAX_BAD",
  3221225539: "STATUS_SHARING_VIOLATION",
  3221225556: "STATUS_FILE_LOCK_CONFLICT",
  3221225558: "STATUS_DELETE_PENDING",
  3221225578: "STATUS_WRONG_PASSWORD",
  3221225581: "STATUS_LOGON_FAILURE",
  3221225582: "STATUS_ACCOUNT_RESTRICTION",
  3221225585: "STATUS_PASSWORD_EXPIRED",
  3221225586: "STATUS_ACCOUNT_DISABLED",
  3221225599: "STATUS_DISK_FULL",
  3221225634: "STATUS_MEDIA_WRITE_PROTECTED",
  3221225658: "STATUS_FILE_IS_A_DIRECTORY",
  3221225659: "STATUS_NOT_SUPPORTED",
  3221225653: "STATUS_IO_TIMEOUT",
  3221225673: "STATUS_NETWORK_NAME_DELETED",
  3221225676: "STATUS_BAD_NETWORK_NAME",
  3221225729: "STATUS_DIRECTORY_NOT_EMPTY",
  3221225731: "STATUS_NOT_A_DIRECTORY",
  3221225760: "STATUS_CANCELLED",
  3221225768: "STATUS_FILE_CLOSED",
  3221225860: "STATUS_INVALID_DEVICE_STATE",
  3221225987: "STATUS_USER_SESSION_DELETED",
  3221226036: "STATUS_ACCOUNT_LOCKED_OUT",
  3221225540: "STATUS_QUOTA_EXCEEDED",
  3221226332: "STATUS_NETWORK_SESSION_EXPIRED",
  3221266432: "STATUS_INVALID_SIGNATURE",
  3221225989: "STATUS_INSUFF_SERVER_RESOURCES",
  3221225495: "STATUS_NO_MEMORY",
  3221225626: "STATUS_INSUFFICIENT_RESOURCES",
};

/** The name of an NT status, e.g. "STATUS_ACCESS_DENIED", or its hex value when unknown here. */
export function statusName(status: number): string {
  return NAMES[status] ?? `NTSTATUS 0x${status.toString(16).padStart(8, "0")}`;
}

/** What a request fails with when the server answers an error status; `code` is the status's name (as smb-error.ts maps it). */
export class SmbStatusError extends Error {
  readonly code: string;
  readonly status: number;

  constructor(status: number, command: string) {
    super(`the server answered ${statusName(status)} to ${command}`);
    this.name = "SmbStatusError";
    this.status = status;
    this.code = statusName(status);
  }
}

/** A failure of the connection itself (closed, timed out, protocol violation); `code` is an errno-like name. */
export class SmbConnectionError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SmbConnectionError";
    this.code = code;
  }
}
