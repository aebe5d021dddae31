import type { MergeStorage } from "../formats/vhd/index.js";
import { RemoteError } from "../remotes/remote-error.js";
import type { Remote, UpdatableFile } from "../remotes/remote.js";

/** A remote whose files can be changed in place (LOCAL, SMB, NFS): where VHD merges run through the remote's protocol. */
export type UpdatableRemote = Remote & { openForUpdate(path: string): Promise<UpdatableFile> };

export function canUpdateInPlace(remote: Remote): remote is UpdatableRemote {
  return typeof remote.openForUpdate === "function";
}

function isNotFound(error: unknown): boolean {
  return error instanceof RemoteError && error.code === "NOT_FOUND";
}

/**
 * The merge's file operations on a remote, with remote paths: the parent changed in place ({@link Remote.openForUpdate}),
 * the child read at offsets, the state file and the checksum tables replaced atomically and durably (`writeFile`), renames
 * and deletes durable as the remote makes them (README.md in server/remotes, "Durability"). Errors are the remote's own
 * (RemoteError naming the kind and the path), except a missing small file, which the merge asks about.
 */
export function remoteMergeStorage(remote: UpdatableRemote): MergeStorage {
  return {
    openForUpdate: (path) => remote.openForUpdate(path),
    openForRead: (path) => remote.openRandomAccess(path),
    async readFile(path) {
      try {
        return await remote.readFile(path);
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    },
    writeFileDurably: (path, bytes) => remote.writeFile(path, bytes),
    rename: (from, to) => remote.rename(from, to),
    unlink: (path) => remote.delete(path),
    async exists(path) {
      try {
        await remote.stat(path);
        return true;
      } catch (error) {
        if (isNotFound(error)) return false;
        throw error;
      }
    },
  };
}
