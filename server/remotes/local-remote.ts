import { type WriteStream, constants, createWriteStream } from "node:fs";
import { access, open, readdir, readFile, rename, rm, stat, statfs, unlink, type FileHandle } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createFileExclusive, makeFoldersDurably, syncFolder, writebackBehind, writeNewFileSynced } from "./fs-durable.js";
import { fromFsError } from "./fs-error.js";
import { attributeError, immutabilityProblem, setImmutable } from "./immutable-attribute.js";
import { checkByteRange, checkReadWindow, closedHandleError } from "./remote-arguments.js";
import { RemoteError } from "./remote-error.js";
import { checkRemotePath, isTemporaryName, joinRemotePath, temporaryPathFor } from "./remote-path.js";
import type { ByteRange, FileStat, RandomAccessFile, Remote, SpaceInfo, UpdatableFile, WriteStreamOptions } from "./remote.js";
import { asWriteAbortError, translateStreamErrors, watchSourceErrors } from "./stream-errors.js";

/** What a backup file write may hold in memory ahead of the disk (see writeStream). */
const WRITE_BUFFER_BYTES = 1024 * 1024;

/** Destroys a file write stream unless it already closed, and waits until its file is closed. */
function closed(stream: WriteStream): Promise<void> {
  if (stream.closed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once("close", () => resolve());
    stream.destroy();
  });
}

/**
 * A remote that is a folder on this machine (or a share the administrator mounted there).
 *
 * Writes go to `.name.tmp-<random>` in the target folder, are flushed to disk (fsync), then renamed:
 * a crash leaves at most a temporary file, never a partial file under the final name. Every change
 * of a folder's entries (that rename, a rename, a delete, a new folder) is followed by an fsync of
 * the folder, so that it is durable when the call returns (see `fs-durable.ts`).
 * The folder itself is never created: if a share is not mounted, writing into the empty mount point
 * would silently fill the system disk, so a missing folder is an error of {@link LocalRemote.open}.
 */
export class LocalRemote implements Remote {
  readonly kind = "LOCAL" as const;
  readonly name: string;
  readonly root: string;
  private opening: Promise<void> | undefined;
  immutabilityDays = 0;

  /** `root` must be an absolute path (INVALID_CONFIG otherwise). */
  constructor(root: string) {
    this.name = `local remote "${root}"`;
    if (typeof root !== "string" || !isAbsolute(root) || root.includes("\0")) {
      throw new RemoteError({
        code: "INVALID_CONFIG",
        remote: this.name,
        operation: "configure",
        detail: "the location of a local remote must be an absolute path",
      });
    }
    this.root = resolve(root);
  }

  open(): Promise<void> {
    this.opening ??= this.checkRoot().catch((error: unknown) => {
      this.opening = undefined;
      throw error;
    });
    return this.opening;
  }

  async close(): Promise<void> {
    this.opening = undefined;
  }

  private async checkRoot(): Promise<void> {
    const where = { remote: this.name, operation: "open", path: "" };
    const info = await stat(this.root).catch((error: unknown) => {
      throw fromFsError(error, {
        ...where,
        hint: "create the folder (or mount the share) first; Cairn never creates a remote's folder itself",
      });
    });
    if (!info.isDirectory()) {
      throw new RemoteError({ ...where, code: "INVALID_CONFIG", detail: "the location is a file, not a folder" });
    }
    await access(this.root, constants.R_OK | constants.W_OK | constants.X_OK).catch((error: unknown) => {
      throw fromFsError(error, { ...where, hint: "make the folder readable and writable by the Cairn process" });
    });
  }

  private check(path: string, operation: string, allowRoot = false): string {
    return checkRemotePath(path, { remote: this.name, operation, allowRoot });
  }

  private absolute(path: string): string {
    return path === "" ? this.root : join(this.root, path);
  }

  /** Opens a file for reading, refusing folders with NOT_FOUND. */
  private async openFile(path: string, operation: string): Promise<FileHandle> {
    await this.open();
    const handle = await open(this.absolute(path), "r").catch((error: unknown) => {
      throw fromFsError(error, { remote: this.name, operation, path });
    });
    const info = await handle.stat();
    if (info.isDirectory()) {
      await handle.close();
      throw this.folderIsNotAFile(path, operation);
    }
    return handle;
  }

  private folderIsNotAFile(path: string, operation: string): RemoteError {
    return new RemoteError({
      code: "NOT_FOUND",
      remote: this.name,
      operation,
      path,
      detail: "this is a folder, not a file",
    });
  }

  async createReadStream(path: string, range?: ByteRange): Promise<Readable> {
    const file = this.check(path, "read");
    const { start, end } = checkByteRange(range, { remote: this.name, path: file });
    const handle = await this.openFile(file, "read");
    const stream = handle.createReadStream({ start, end, autoClose: true });
    return translateStreamErrors(stream, (error) => fromFsError(error, { remote: this.name, operation: "read", path: file }));
  }

  async writeStream(path: string, source: Readable, options: WriteStreamOptions = {}): Promise<{ bytes: number }> {
    const file = this.check(path, "write");
    const where = { remote: this.name, operation: "write", path: file };
    const sourceErrors = watchSourceErrors(source);
    const temporary = this.absolute(temporaryPathFor(file));
    let output: ReturnType<typeof createWriteStream> | undefined;
    let outputError: unknown;
    try {
      options.signal?.throwIfAborted();
      await this.open();
      await makeFoldersDurably(dirname(temporary));
      // flush: fsync before close. highWaterMark: with the default 16 KiB every 64 KiB chunk of an export filled the buffer,
      // so the source paused until that one write came back from the thread pool (reads and writes never overlapped, and
      // each write was a round trip); with 1 MiB the chunks that arrive during a write queue up and go out as one writev.
      output = createWriteStream(temporary, { flags: "wx", flush: true, highWaterMark: WRITE_BUFFER_BYTES });
      // pipeline() hands a failing file's error to the source too: remember whose it was first.
      output.once("error", (error) => {
        if (!sourceErrors.failed(error)) outputError = error;
      });
      await pipeline(source, writebackBehind(output), output, { signal: options.signal });
      await rename(temporary, this.absolute(file));
      await syncFolder(dirname(temporary));
      return { bytes: output.bytesWritten };
    } catch (error) {
      source.destroy();
      // A write stream destroyed while its file is still being opened (the signal fired at once) creates the file after
      // the destroy: removing the temporary before its close would race that open and lose.
      if (output !== undefined) await closed(output);
      // A temporary file we cannot remove stays behind under a temporary name, where cleaners look
      // (isTemporaryName); the error of the write itself is what the caller must see.
      await rm(temporary, { force: true }).catch(() => undefined);
      const fromSource = sourceErrors.failed(error) && error !== outputError;
      if (fromSource) throw error;
      throw asWriteAbortError(error, options.signal) ?? fromFsError(error, where);
    }
  }

  async writeFile(path: string, data: Uint8Array | string): Promise<void> {
    const file = this.check(path, "write");
    const temporary = this.absolute(temporaryPathFor(file));
    try {
      await this.open();
      await makeFoldersDurably(dirname(temporary));
      await writeNewFileSynced(temporary, data);
      await rename(temporary, this.absolute(file));
      await syncFolder(dirname(temporary));
    } catch (error) {
      // As in writeStream: a leftover keeps its temporary name; the write's own error matters.
      await rm(temporary, { force: true }).catch(() => undefined);
      throw fromFsError(error, { remote: this.name, operation: "write", path: file });
    }
  }

  async writeFileExclusive(path: string, data: Uint8Array | string): Promise<boolean> {
    const file = this.check(path, "create");
    try {
      await this.open();
      await makeFoldersDurably(dirname(this.absolute(file)));
      return await createFileExclusive(this.absolute(file), this.absolute(temporaryPathFor(file)), data);
    } catch (error) {
      throw fromFsError(error, { remote: this.name, operation: "create", path: file });
    }
  }

  async readFile(path: string): Promise<Buffer> {
    const file = this.check(path, "read");
    await this.open();
    return readFile(this.absolute(file)).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === "EISDIR") throw this.folderIsNotAFile(file, "read");
      throw fromFsError(error, { remote: this.name, operation: "read", path: file });
    });
  }

  async list(dir: string, options: { recursive?: boolean } = {}): Promise<string[]> {
    const folder = this.check(dir, "list", true);
    await this.open();
    try {
      const names = options.recursive === true ? await this.walk(folder, "") : await readdir(this.absolute(folder));
      return names.sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw fromFsError(error, { remote: this.name, operation: "list", path: folder });
    }
  }

  /** Every file under `folder/relative`, as paths relative to `folder`. */
  private async walk(folder: string, relative: string): Promise<string[]> {
    const entries = await readdir(this.absolute(joinRemotePath(folder, relative)), { withFileTypes: true });
    const files: string[] = [];
    for (const entry of entries) {
      const path = joinRemotePath(relative, entry.name);
      if (entry.isDirectory()) files.push(...(await this.walk(folder, path)));
      else files.push(path);
    }
    return files;
  }

  async stat(path: string): Promise<FileStat> {
    const file = this.check(path, "stat");
    await this.open();
    const info = await stat(this.absolute(file)).catch((error: unknown) => {
      throw fromFsError(error, { remote: this.name, operation: "stat", path: file });
    });
    if (info.isDirectory()) throw this.folderIsNotAFile(file, "stat");
    return { size: info.size, mtime: info.mtime };
  }

  async rename(from: string, to: string): Promise<void> {
    const source = this.check(from, "rename");
    const target = this.check(to, "rename");
    await this.stat(source);
    const where = { remote: this.name, operation: "rename", path: `${source}" to "${target}` };
    try {
      await makeFoldersDurably(dirname(this.absolute(target)));
      await rename(this.absolute(source), this.absolute(target));
      await syncFolder(dirname(this.absolute(target)));
      // A move between folders also removes an entry from the source folder.
      if (dirname(source) !== dirname(target)) await syncFolder(dirname(this.absolute(source)));
    } catch (error) {
      throw fromFsError(error, where);
    }
  }

  async checkImmutability(): Promise<void> {
    await this.open();
    const problem = await immutabilityProblem(this.root);
    if (problem !== undefined) {
      throw new RemoteError({
        code: "INVALID_CONFIG",
        remote: this.name,
        operation: "make files immutable on",
        detail: problem,
        field: "immutabilityDays",
      });
    }
  }

  /** The immutable attribute: the date is the repository's to keep (in the backup's metadata), the attribute has none. */
  async protect(path: string, _until: Date): Promise<void> {
    const file = this.check(path, "protect");
    await this.open();
    await setImmutable([this.absolute(file)], true).catch((error: unknown) => {
      throw attributeError(error, { remote: this.name, operation: "make immutable", path: file });
    });
  }

  async releaseProtection(paths: string[]): Promise<void> {
    const files = paths.map((path) => this.check(path, "release"));
    await this.open();
    const present: string[] = [];
    for (const file of files) {
      if (
        await stat(this.absolute(file)).then(
          () => true,
          () => false,
        )
      )
        present.push(this.absolute(file));
    }
    await setImmutable(present, false).catch((error: unknown) => {
      throw attributeError(error, { remote: this.name, operation: "lift the immutability of", path: files[0] ?? "" });
    });
  }

  async delete(path: string): Promise<void> {
    const file = this.check(path, "delete");
    await this.open();
    try {
      await unlink(this.absolute(file));
      await syncFolder(dirname(this.absolute(file)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw fromFsError(error, { remote: this.name, operation: "delete", path: file });
    }
  }

  async deleteTree(dir: string): Promise<void> {
    const folder = this.check(dir, "delete the tree");
    await this.open();
    try {
      await rm(this.absolute(folder), { recursive: true, force: true });
      await syncFolder(dirname(this.absolute(folder)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return; // its parent is missing too: nothing was there
      throw fromFsError(error, { remote: this.name, operation: "delete the tree", path: folder });
    }
  }

  async mkdir(dir: string): Promise<void> {
    const folder = this.check(dir, "create the folder");
    await this.open();
    await makeFoldersDurably(this.absolute(folder)).catch((error: unknown) => {
      throw fromFsError(error, { remote: this.name, operation: "create the folder", path: folder });
    });
  }

  async spaceInfo(): Promise<SpaceInfo> {
    await this.open();
    const info = await statfs(this.root).catch((error: unknown) => {
      throw fromFsError(error, { remote: this.name, operation: "read the free space of", path: "" });
    });
    return {
      freeBytes: info.bavail * info.bsize,
      usedBytes: (info.blocks - info.bfree) * info.bsize,
      totalBytes: info.blocks * info.bsize,
    };
  }

  async openRandomAccess(path: string): Promise<RandomAccessFile> {
    const file = this.check(path, "open");
    const handle = await this.openFile(file, "open");
    const size = (await handle.stat()).size;
    const where = { remote: this.name, path: file };
    let closed = false;
    return {
      size,
      read: async (offset: number, length: number): Promise<Buffer> => {
        if (closed) throw closedHandleError(where);
        checkReadWindow(offset, length, size, where);
        const buffer = Buffer.allocUnsafe(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await handle.read(buffer, done, length - done, offset + done).catch((error: unknown) => {
            throw fromFsError(error, { ...where, operation: "read" });
          });
          if (bytesRead === 0) {
            throw new RemoteError({
              ...where,
              code: "IO",
              operation: "read",
              detail: `the file shrank below ${offset + length} bytes while open`,
            });
          }
          done += bytesRead;
        }
        return buffer;
      },
      close: async (): Promise<void> => {
        if (closed) return;
        closed = true;
        await handle.close();
      },
    };
  }

  async openForUpdate(path: string): Promise<UpdatableFile> {
    const file = this.check(path, "open for update");
    await this.open();
    const handle = await open(this.absolute(file), "r+").catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === "EISDIR") throw this.folderIsNotAFile(file, "open for update");
      throw fromFsError(error, { remote: this.name, operation: "open for update", path: file });
    });
    let size: number;
    try {
      const info = await handle.stat();
      if (info.isDirectory()) throw this.folderIsNotAFile(file, "open for update");
      size = info.size;
    } catch (error) {
      await handle.close();
      throw fromFsError(error, { remote: this.name, operation: "open for update", path: file });
    }
    const where = { remote: this.name, path: file };
    let closed = false;
    const refuse = (operation: string, detail: string): RemoteError =>
      new RemoteError({ ...where, code: "INVALID_ARGUMENT", operation, detail });
    const ensureOpen = (operation: string): void => {
      if (closed) throw refuse(operation, "the file was closed");
    };
    const checkOffset = (operation: string, name: string, value: unknown): void => {
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0)
        throw refuse(operation, `${name} must be a non-negative integer, got ${String(value)}`);
    };
    const fail = (operation: string) => (error: unknown) => {
      throw fromFsError(error, { ...where, operation });
    };
    return {
      get size() {
        return size;
      },
      read: async (offset: number, length: number): Promise<Buffer> => {
        ensureOpen("read");
        checkReadWindow(offset, length, size, where);
        const buffer = Buffer.allocUnsafe(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await handle.read(buffer, done, length - done, offset + done).catch(fail("read"));
          if (bytesRead === 0)
            throw new RemoteError({
              ...where,
              code: "IO",
              operation: "read",
              detail: `the file shrank below ${offset + length} bytes while open`,
            });
          done += bytesRead;
        }
        return buffer;
      },
      write: async (offset: number, data: Uint8Array): Promise<void> => {
        ensureOpen("write");
        checkOffset("write", "offset", offset);
        if (!(data instanceof Uint8Array)) throw refuse("write", "the data must be bytes (a Uint8Array)");
        let done = 0;
        while (done < data.length) {
          const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done).catch(fail("write"));
          done += bytesWritten;
        }
        size = Math.max(size, offset + data.length);
      },
      truncate: async (length: number): Promise<void> => {
        ensureOpen("truncate");
        checkOffset("truncate", "size", length);
        await handle.truncate(length).catch(fail("truncate"));
        size = length;
      },
      sync: async (): Promise<void> => {
        ensureOpen("sync");
        await handle.sync().catch(fail("sync"));
      },
      close: async (): Promise<void> => {
        if (closed) return;
        closed = true;
        await handle.close().catch(fail("close"));
      },
    };
  }

  isTemporaryName(nameOrPath: string): boolean {
    return isTemporaryName(nameOrPath);
  }
}
