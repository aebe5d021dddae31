import { RemoteError, describeCause, type RemoteErrorCode } from "./remote-error.js";

/** NT status names (smb/status.ts) and errno names of the socket, mapped to remote codes. */
const STATUSES: Record<string, RemoteErrorCode> = {
  STATUS_OBJECT_NAME_NOT_FOUND: "NOT_FOUND",
  STATUS_OBJECT_PATH_NOT_FOUND: "NOT_FOUND",
  STATUS_NO_SUCH_FILE: "NOT_FOUND",
  STATUS_DELETE_PENDING: "NOT_FOUND",
  STATUS_BAD_NETWORK_NAME: "NOT_FOUND",
  STATUS_OBJECT_NAME_COLLISION: "ALREADY_EXISTS",
  STATUS_DIRECTORY_NOT_EMPTY: "ALREADY_EXISTS",
  STATUS_FILE_IS_A_DIRECTORY: "ALREADY_EXISTS",
  STATUS_NOT_A_DIRECTORY: "ALREADY_EXISTS",
  STATUS_ACCESS_DENIED: "PERMISSION_DENIED",
  STATUS_LOGON_FAILURE: "PERMISSION_DENIED",
  STATUS_ACCOUNT_DISABLED: "PERMISSION_DENIED",
  STATUS_ACCOUNT_LOCKED_OUT: "PERMISSION_DENIED",
  STATUS_PASSWORD_EXPIRED: "PERMISSION_DENIED",
  STATUS_MEDIA_WRITE_PROTECTED: "PERMISSION_DENIED",
  STATUS_DISK_FULL: "NO_SPACE",
  STATUS_QUOTA_EXCEEDED: "NO_SPACE",
  STATUS_OBJECT_NAME_INVALID: "INVALID_PATH",
  STATUS_NETWORK_NAME_DELETED: "UNREACHABLE",
  STATUS_USER_SESSION_DELETED: "UNREACHABLE",
  STATUS_NETWORK_SESSION_EXPIRED: "UNREACHABLE",
  STATUS_WRONG_PASSWORD: "PERMISSION_DENIED",
  STATUS_ACCOUNT_RESTRICTION: "PERMISSION_DENIED",
  STATUS_IO_TIMEOUT: "UNREACHABLE",
  ECONNREFUSED: "UNREACHABLE",
  ECONNRESET: "UNREACHABLE",
  ENOTFOUND: "UNREACHABLE",
  EAI_AGAIN: "UNREACHABLE",
  ETIMEDOUT: "UNREACHABLE",
  EHOSTUNREACH: "UNREACHABLE",
  ENETUNREACH: "UNREACHABLE",
  EPIPE: "UNREACHABLE",
};

/** The server could not serve the request for now (Samba answers a TREE_CONNECT so when it is short of memory or processes). */
export const SERVER_SHORT_OF_RESOURCES = new Set(["STATUS_NO_MEMORY", "STATUS_INSUFFICIENT_RESOURCES", "STATUS_INSUFF_SERVER_RESOURCES"]);

const HINTS: Record<string, string> = {
  STATUS_NO_MEMORY: "the server is short of memory; retry later, and look at its load",
  STATUS_INSUFFICIENT_RESOURCES: "the server is short of resources; retry later, and look at its load",
  STATUS_INSUFF_SERVER_RESOURCES: "the server is short of resources; retry later, and look at its load",
  STATUS_BAD_NETWORK_NAME: "check the share name in the location",
  STATUS_LOGON_FAILURE: "check the user name, the password and the domain",
  STATUS_SHARING_VIOLATION: "another program holds the file open; retry later",
};

/** The NT status or errno name of an error from the SMB client, if any. */
export function smbStatusOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Wraps an SMB client error in a {@link RemoteError}; a `RemoteError` passes through. */
export function fromSmbError(
  error: unknown,
  where: { remote: string; operation: string; path?: string; secrets?: readonly (string | undefined)[] },
): RemoteError {
  if (error instanceof RemoteError) return error;
  const status = smbStatusOf(error) ?? "";
  const code = STATUSES[status] ?? "IO";
  const transient = code === "UNREACHABLE" || status === "STATUS_SHARING_VIOLATION" || SERVER_SHORT_OF_RESOURCES.has(status);
  const message = describeCause(error);
  // The client's messages carry an unfilled "%hs" placeholder; drop it rather than show it.
  const detail = message.replace(/ ?%hs ?/g, " ").trim();
  return new RemoteError({ ...where, code, transient, detail, hint: HINTS[status], cause: error });
}
