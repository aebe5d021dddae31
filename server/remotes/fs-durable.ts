import { type WriteStream, constants, fdatasync } from "node:fs";
import { link, mkdir, open, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { Transform } from "node:stream";

/**
 * Durability on a local file system. fsync(2) of a file makes its data durable, not its name: a
 * rename, a new file, a new folder or a delete is durable only once the folder holding the name is
 * fsynced too. Without that, a crash of the machine shortly after a backup "succeeded" can leave the
 * old name, no name, or a folder without its files.
 */

/**
 * fsyncs folder `path` (opened read-only as a directory). A file system that cannot fsync a folder
 * says EINVAL (some network and FUSE file systems): that error alone is ignored, since nothing more
 * can be done there; any other error is the caller's.
 */
export async function syncFolder(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
  } finally {
    await handle.close();
  }
}

/**
 * `mkdir -p path`, then fsyncs the parent of each folder it created (none when all existed), so the
 * new folders survive a crash. A folder another caller created at the same moment is synced by that
 * caller; on journalled file systems (ext4, XFS) any later fsync also commits it.
 */
export async function makeFoldersDurably(path: string): Promise<void> {
  const first = await mkdir(path, { recursive: true });
  if (first === undefined) return;
  const parents: string[] = [];
  for (let folder = path; ; folder = dirname(folder)) {
    parents.push(dirname(folder));
    if (folder === first || dirname(folder) === folder) break;
  }
  for (const parent of parents.reverse()) await syncFolder(parent);
}

/**
 * Writes `data` to a new file at `path` and fsyncs it; fails with EEXIST if any entry has that name.
 * A file it created but could not fill is removed: it must not stand as if its content were whole.
 */
export async function writeNewFileSynced(path: string, data: Uint8Array | string): Promise<void> {
  const handle = await open(path, "wx");
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    // Best effort after the write's own failure, which is what the caller sees: a descriptor that fails to close is
    // released by the GC, and a file we cannot unlink is one the caller's temporary name or the cleaner accounts for.
    await handle.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw error;
  }
  await handle.close();
}

/** link(2) errors meaning "this file system has no hard links" (FAT, exFAT, some FUSE and SMB mounts). */
const NO_HARD_LINKS = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"]);

/**
 * Creates `path` holding `data` only if no entry has that name: `false` if one has. The content is
 * written and fsynced under `temporary` (same folder) first, then published with link(2), which the
 * kernel refuses atomically if the name exists: a reader sees the whole file or none. Where the file
 * system has no hard links, the file is created in place with O_EXCL (as atomic, but a reader can see
 * it partial while it is written). The folder is fsynced after; `temporary` is always removed.
 */
export async function createFileExclusive(path: string, temporary: string, data: Uint8Array | string): Promise<boolean> {
  try {
    await writeNewFileSynced(temporary, data);
    try {
      await link(temporary, path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "";
      if (code === "EEXIST") return false;
      if (!NO_HARD_LINKS.has(code)) throw error;
      const created = await writeNewFileSynced(path, data).then(
        () => true,
        (fallbackError: unknown) => {
          if ((fallbackError as NodeJS.ErrnoException).code === "EEXIST") return false;
          throw fallbackError;
        },
      );
      if (!created) return false;
    }
    await syncFolder(dirname(path));
    return true;
  } finally {
    // Usually gone already (linked or never created); one left behind keeps its temporary name, where cleaners look.
    await unlink(temporary).catch(() => undefined);
  }
}

/** How far a file's written bytes may run ahead of the disk before {@link writebackBehind} asks for the next flush. */
export const WRITEBACK_STEP_BYTES = 32 * 1024 * 1024;

/**
 * A pass-through for the stream that feeds `output`: each time {@link WRITEBACK_STEP_BYTES} more bytes have reached the
 * file, it asks for them to be flushed (fdatasync on a thread of the pool) while the stream goes on. Without it every byte of
 * a backup sits in the page cache until the closing fsync, which then waits for the whole file: half a second per GiB on
 * these machines, during which nothing else moves. With it the closing fsync finds little left to write.
 *
 * One flush at a time; the stream never waits for one. A failed flush fails the stream: on Linux a failed fsync forgets the
 * error, so the closing fsync could succeed over lost pages. The last flush is awaited before the stream ends, so none runs
 * when `output` closes its descriptor.
 */
export function writebackBehind(output: WriteStream, stepBytes = WRITEBACK_STEP_BYTES): Transform {
  let flushedUpTo = 0;
  let flushing: Promise<void> | undefined;
  let failure: NodeJS.ErrnoException | undefined;
  const startFlush = () => {
    const fd = (output as WriteStream & { fd: number | null }).fd;
    if (flushing || typeof fd !== "number" || output.bytesWritten - flushedUpTo < stepBytes) return;
    const upTo = output.bytesWritten;
    flushing = new Promise<void>((resolve) =>
      fdatasync(fd, (error) => {
        flushing = undefined;
        if (error) failure ??= error;
        else flushedUpTo = upTo;
        resolve();
      }),
    );
  };
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (failure) return callback(failure);
      startFlush();
      callback(null, chunk);
    },
    flush(callback) {
      const last = flushing ?? Promise.resolve();
      void last.then(() => callback(failure));
    },
  });
}
