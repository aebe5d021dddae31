import { Nfs3Error } from "./nfs/nfs3.js";
import { RpcError } from "./nfs/rpc.js";
import { RemoteError, describeCause, type RemoteErrorCode } from "./remote-error.js";

/**
 * NFS and MOUNT statuses, RPC failures and socket errors mapped to remote codes (PROTOCOL.md, "Errors", says why each).
 * NFS3ERR_STALE is UNREACHABLE like a stale kernel mount (fs-error.ts maps ESTALE so): the handle the server gave is no
 * longer valid (the export was re-created or the server lost its handles); the remote drops its session, and a retry
 * looks every name up afresh, then answers NOT_FOUND if the thing is really gone.
 */
const CODES: Record<string, { code: RemoteErrorCode; transient?: boolean }> = {
  NFS3ERR_NOENT: { code: "NOT_FOUND" },
  MNT3ERR_NOENT: { code: "NOT_FOUND" },
  MNT3ERR_NOTDIR: { code: "NOT_FOUND" },
  NFS3ERR_EXIST: { code: "ALREADY_EXISTS" },
  NFS3ERR_NOTEMPTY: { code: "ALREADY_EXISTS" },
  NFS3ERR_ISDIR: { code: "ALREADY_EXISTS" },
  NFS3ERR_NOTDIR: { code: "ALREADY_EXISTS" },
  NFS3ERR_PERM: { code: "PERMISSION_DENIED" },
  NFS3ERR_ACCES: { code: "PERMISSION_DENIED" },
  NFS3ERR_ROFS: { code: "PERMISSION_DENIED" },
  MNT3ERR_PERM: { code: "PERMISSION_DENIED" },
  MNT3ERR_ACCES: { code: "PERMISSION_DENIED" },
  AUTH_ERROR: { code: "PERMISSION_DENIED" },
  NFS3ERR_NOSPC: { code: "NO_SPACE" },
  NFS3ERR_DQUOT: { code: "NO_SPACE" },
  NFS3ERR_FBIG: { code: "NO_SPACE" },
  NFS3ERR_NAMETOOLONG: { code: "INVALID_PATH" },
  MNT3ERR_NAMETOOLONG: { code: "INVALID_PATH" },
  NFS3ERR_STALE: { code: "UNREACHABLE" },
  NFS3ERR_JUKEBOX: { code: "IO", transient: true },
  NFS3ERR_SERVERFAULT: { code: "IO", transient: true },
  PROG_UNAVAIL: { code: "INVALID_CONFIG" },
  PROG_MISMATCH: { code: "INVALID_CONFIG" },
  RPC_MISMATCH: { code: "INVALID_CONFIG" },
  ECONNREFUSED: { code: "UNREACHABLE" },
  ECONNRESET: { code: "UNREACHABLE" },
  ETIMEDOUT: { code: "UNREACHABLE" },
  EHOSTUNREACH: { code: "UNREACHABLE" },
  ENETUNREACH: { code: "UNREACHABLE" },
  EHOSTDOWN: { code: "UNREACHABLE" },
  ENOTFOUND: { code: "UNREACHABLE" },
  EAI_AGAIN: { code: "UNREACHABLE" },
  EPIPE: { code: "UNREACHABLE" },
};

const HINTS: Record<string, string> = {
  NFS3ERR_ROFS: "the export is read-only: export it read-write (rw) to this machine",
  NFS3ERR_ACCES: "check that options.uid and options.gid may write there, and that the export does not squash them",
  NFS3ERR_PERM: "check that options.uid and options.gid may write there, and that the export does not squash them",
  MNT3ERR_ACCES:
    "check the export path (showmount -e <host> lists the exports: servers refuse a path they do not export this way too) and that this machine's address is authorized on it; a Linux server also needs the 'insecure' export option (Cairn connects from a port above 1023)",
  MNT3ERR_PERM: "authorize this machine's address on the export",
  MNT3ERR_NOENT: "check the export path in the location (showmount -e <host> lists the exports)",
  MNT3ERR_NOTDIR: "check the export path in the location (showmount -e <host> lists the exports)",
  NFS3ERR_STALE: "the server no longer knows this file or folder (stale handle); retry, and check that the export was not re-created",
  NFS3ERR_NOTDIR: "a file is where a folder is needed: remove or rename it",
  NFS3ERR_ISDIR: "a folder is where a file is needed: remove or rename it",
  NFS3ERR_NOTEMPTY: "a non-empty folder is in the way: remove or rename it",
  PROG_UNAVAIL: "the port does not serve NFS version 3 or MOUNT version 3: check the port in the location and options.mountPort",
  PROG_MISMATCH: "the server does not speak NFS version 3 on that port: enable NFSv3 on the server",
  ECONNREFUSED: "check the host and the ports (the location's port, options.mountPort) and that the NFS server is running",
  ETIMEDOUT: "check the address, the network and that the NFS server is running; raise options.timeoutMs on a slow link",
};

/** The NFS/MOUNT status name, RPC failure or errno name an error carries, if any. */
export function nfsStatusOf(error: unknown): string | undefined {
  if (error instanceof Nfs3Error) return error.status;
  if (error instanceof RpcError) return error.code;
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Wraps an NFS client error in a {@link RemoteError}; a `RemoteError` passes through. */
export function fromNfsError(error: unknown, where: { remote: string; operation: string; path?: string; hint?: string }): RemoteError {
  if (error instanceof RemoteError) return error;
  const status = nfsStatusOf(error) ?? "";
  const mapped = CODES[status] ?? { code: "IO" as const };
  return new RemoteError({
    ...where,
    code: mapped.code,
    transient: mapped.transient,
    detail: describeCause(error),
    hint: where.hint ?? HINTS[status],
    cause: error,
  });
}
