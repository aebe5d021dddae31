/**
 * Where a merge's files live, as the merge needs them: files changed in place, small files replaced atomically, durable
 * renames and deletes. The merge orders its writes so that every state a crash leaves reads right (../FORMAT.md,
 * "Merge"); a storage only has to keep each promise below. Formats know nothing of remotes: the repository adapts a
 * remote to this interface, and {@link nodeFsMergeStorage} is the one over this machine's files.
 */
import { type FileHandle, access, open, readFile, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";

/** A file opened to be changed in place. */
export interface MergeFile {
  /** The size now: the size at open, changed by writes past the end and by {@link MergeFile.truncate}. */
  readonly size: number;
  /** Exactly `length` bytes at `offset`; a range not within `size` is refused (no short reads). */
  read(offset: number, length: number): Promise<Buffer>;
  /** Writes all of `data` at `offset`; past the end grows the file. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Cuts or extends (with zeros) the file to `size` bytes. */
  truncate(size: number): Promise<void>;
  /** Every write so far is on stable storage when this resolves. */
  sync(): Promise<void>;
  /** Releases the file, without an implicit sync. Idempotent. */
  close(): Promise<void>;
}

/** A file opened for reads at any offset (the child of a merge, which is only read). */
export interface MergeSource {
  readonly size: number;
  /** Exactly `length` bytes at `offset`, within `size`. */
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/** The file operations of a merge. Paths are the storage's own (local paths, remote paths): the merge only passes them on. */
export interface MergeStorage {
  /** Opens an existing file for reads and writes; fails when it is missing. */
  openForUpdate(path: string): Promise<MergeFile>;
  /** Opens an existing file for reads; fails when it is missing. */
  openForRead(path: string): Promise<MergeSource>;
  /** A small file's content (state file, checksums), or undefined when there is no such file. */
  readFile(path: string): Promise<Buffer | undefined>;
  /** Replaces `path` atomically and durably: after a crash it holds the old content or the new, never a torn file. */
  writeFileDurably(path: string, bytes: Uint8Array | string): Promise<void>;
  /** Moves `from` over `to` (replacing it), durably. */
  rename(from: string, to: string): Promise<void>;
  /** Deletes a file durably; a missing file is fine. */
  unlink(path: string): Promise<void>;
  exists(path: string): Promise<boolean>;
}

/** Some file systems cannot fsync a directory (EINVAL) and some platforms cannot open one (EISDIR): nothing to do there. */
const DIRECTORY_SYNC_UNSUPPORTED = new Set(["EINVAL", "EISDIR", "ENOTSUP"]);

/**
 * A rename or an unlink is only durable once its directory is fsync'd, and a file written then renamed must be fsync'd
 * before the rename, or a crash can leave the new name on an empty file.
 */
export async function fsyncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, "r");
    await handle.sync();
  } catch (error) {
    if (!DIRECTORY_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? "")) throw error;
  } finally {
    await handle?.close();
  }
}

async function fsyncDirectoriesOf(...paths: string[]): Promise<void> {
  for (const dir of new Set(paths.map((path) => dirname(path)))) await fsyncDirectory(dir);
}

/** Reads exactly `length` bytes or fails: a file that ends first is an error, never a short buffer. */
async function readExactly(handle: FileHandle, path: string, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, offset + done);
    if (bytesRead === 0) throw new RangeError(`${path}: bytes ${offset}..${offset + length - 1} lie past the end of the file`);
    done += bytesRead;
  }
  return buffer;
}

async function openLocal(path: string, flags: "r" | "r+"): Promise<MergeFile> {
  const handle = await open(path, flags);
  let size: number;
  try {
    size = (await handle.stat()).size;
  } catch (error) {
    await handle.close();
    throw error;
  }
  let closed = false;
  return {
    get size() {
      return size;
    },
    read: (offset, length) => {
      if (offset + length > size) return Promise.reject(new RangeError(`${path}: bytes past the end of the ${size}-byte file`));
      return readExactly(handle, path, offset, length);
    },
    write: async (offset, data) => {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
      size = Math.max(size, offset + data.length);
    },
    truncate: async (length) => {
      await handle.truncate(length);
      size = length;
    },
    // datasync: the file's size (grown by the merge) is covered; its times are not needed for a crash to read right.
    sync: () => handle.datasync(),
    close: async () => {
      if (closed) return;
      closed = true;
      await handle.close();
    },
  };
}

/** The merge's files on this machine's file system: local paths, fsync'd files and directories. */
export const nodeFsMergeStorage: MergeStorage = {
  openForUpdate: (path) => openLocal(path, "r+"),
  openForRead: (path) => openLocal(path, "r"),
  async readFile(path) {
    try {
      return await readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
  },
  /** Writes `${path}.tmp`, fsyncs it, renames it over `path`, fsyncs the directory. */
  async writeFileDurably(path, bytes) {
    const temporary = `${path}.tmp`;
    const handle = await open(temporary, "w");
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
    await fsyncDirectoriesOf(path);
  },
  async rename(from, to) {
    await rename(from, to);
    await fsyncDirectoriesOf(from, to);
  },
  async unlink(path) {
    try {
      await unlink(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    await fsyncDirectoriesOf(path);
  },
  exists: (path) =>
    access(path).then(
      () => true,
      () => false,
    ),
};
