import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { checkByteRange, checkReadWindow, closedHandleError } from "./remote-arguments.js";
import { RemoteError } from "./remote-error.js";
import { checkRemotePath, isTemporaryName, joinRemotePath, parentOf, temporaryPathFor } from "./remote-path.js";
import type { ByteRange, FileStat, RandomAccessFile, Remote, SpaceInfo, WriteStreamOptions } from "./remote.js";
import { SmbClient, smbFileSize, type SmbClientOptions, type SmbFile } from "./smb-client.js";
import { fromSmbError, smbStatusOf } from "./smb-error.js";
import { translateStreamErrors, watchSourceErrors } from "./stream-errors.js";

/** How a {@link SmbRemote} reaches its share. */
export interface SmbRemoteOptions {
  host: string;
  /** @default 445 */
  port?: number;
  share: string;
  /** A folder inside the share holding everything of this remote ("" = the share's root). @default "" */
  folder?: string;
  /** @default "WORKGROUP" */
  domain?: string;
  username: string;
  password: string;
  /** Time allowed for one SMB request, in ms. @default 30 000 */
  timeoutMs?: number;
}

/** Bytes asked of the server per read-stream chunk (the client splits it into 64 KiB requests). */
const READ_CHUNK = 256 * 1024;

/**
 * Answers of a server that cannot flush a folder (Samba needs add-file access to the folder; other
 * servers refuse FLUSH on folders or do not implement it). Nothing better can be done there: the
 * folder's entries are then as durable as the server makes them on its own.
 */
const FOLDER_FLUSH_UNSUPPORTED = new Set([
  "STATUS_ACCESS_DENIED",
  "STATUS_INVALID_PARAMETER",
  "STATUS_INVALID_HANDLE",
  "STATUS_INVALID_DEVICE_REQUEST",
  "STATUS_NOT_SUPPORTED",
  "STATUS_NOT_IMPLEMENTED",
]);

/**
 * A remote on an SMB share, spoken to directly (no kernel mount). Writes go to `.name.tmp-<random>`
 * in the target folder, are flushed (SMB2 FLUSH: the server fsyncs them), then renamed over the final
 * name, as on a local folder; the folder is flushed after every change of its entries (write,
 * rename, delete, created sub-folder) where the server allows it.
 * The share's free space is not available through this client: `spaceInfo()` is `{}`.
 */
export class SmbRemote implements Remote {
  readonly kind = "SMB" as const;
  readonly name: string;
  private readonly options: SmbRemoteOptions;
  private readonly folder: string;
  private client: SmbClient | undefined;
  private opening: Promise<void> | undefined;

  constructor(options: SmbRemoteOptions) {
    this.options = options;
    this.folder = (options.folder ?? "").replace(/^\/+|\/+$/g, "");
    this.name = `SMB remote "//${options.host}:${options.port ?? 445}/${joinRemotePath(options.share, this.folder)}"`;
  }

  private fail(error: unknown, operation: string, path?: string): RemoteError {
    const wrapped = fromSmbError(error, { remote: this.name, operation, path, secrets: [this.options.password] });
    // A lost connection is not reused: the next call connects afresh.
    if (wrapped.code === "UNREACHABLE") void this.close();
    return wrapped;
  }

  private check(path: string, operation: string, allowRoot = false): string {
    return checkRemotePath(path, { remote: this.name, operation, allowRoot });
  }

  private isMissing(error: unknown): boolean {
    const status = smbStatusOf(error);
    return status === "STATUS_OBJECT_NAME_NOT_FOUND" || status === "STATUS_OBJECT_PATH_NOT_FOUND";
  }

  /** The SMB path of a remote path. */
  private smbPath(path: string): string {
    return joinRemotePath(this.folder, path).replace(/\//g, "\\");
  }

  open(): Promise<void> {
    this.opening ??= this.connect().catch((error: unknown) => {
      this.opening = undefined;
      throw error;
    });
    return this.opening;
  }

  private async connect(): Promise<void> {
    const options: SmbClientOptions = {
      host: this.options.host,
      port: this.options.port ?? 445,
      share: this.options.share,
      domain: this.options.domain ?? "WORKGROUP",
      username: this.options.username,
      password: this.options.password,
      timeoutMs: this.options.timeoutMs ?? 30_000,
    };
    const client = new SmbClient(options);
    this.client = client;
    try {
      const info = await client.stat(this.smbPath(""));
      if (!info.isDirectory()) throw new Error("the remote's folder is a file");
    } catch (error) {
      this.client = undefined;
      client.disconnect();
      throw this.fail(error, "open", "");
    }
  }

  private async connected(): Promise<SmbClient> {
    await this.open();
    if (this.client === undefined) throw new Error("SmbRemote: client missing after open (a bug)");
    return this.client;
  }

  async close(): Promise<void> {
    this.opening = undefined;
    this.client?.disconnect();
    this.client = undefined;
  }

  /** Creates every folder of `path` (a remote path), ignoring the ones that exist; each new one is flushed into its parent. */
  private async makeFolders(client: SmbClient, path: string): Promise<void> {
    let done = "";
    for (const segment of path === "" ? [] : path.split("/")) {
      const parent = done;
      done = joinRemotePath(done, segment);
      const created = await client.mkdir(this.smbPath(done)).then(
        () => true,
        (error: unknown) => {
          if (smbStatusOf(error) !== "STATUS_OBJECT_NAME_COLLISION") throw error;
          return false;
        },
      );
      if (created) await this.flushFolder(client, parent);
    }
  }

  /**
   * Makes the entries of `folder` (a remote path) durable on the server: after a rename, a delete or
   * a new name in it, so that the change survives a crash of the server once we report success.
   */
  private async flushFolder(client: SmbClient, folder: string): Promise<void> {
    await client.flushFolder(this.smbPath(folder)).catch((error: unknown) => {
      if (!FOLDER_FLUSH_UNSUPPORTED.has(smbStatusOf(error) ?? "")) throw error;
    });
  }

  private async openFile(path: string, operation: string): Promise<{ client: SmbClient; file: SmbFile }> {
    const client = await this.connected();
    const info = await client.stat(this.smbPath(path)).catch((error: unknown) => {
      throw this.fail(error, operation, path);
    });
    if (info.isDirectory()) {
      throw new RemoteError({ code: "NOT_FOUND", remote: this.name, operation, path, detail: "this is a folder, not a file" });
    }
    const file = await client.open(this.smbPath(path), "r").catch((error: unknown) => {
      throw this.fail(error, operation, path);
    });
    return { client, file };
  }

  async createReadStream(path: string, range?: ByteRange): Promise<Readable> {
    const file = this.check(path, "read");
    const { start, end } = checkByteRange(range, { remote: this.name, path: file });
    const { client, file: handle } = await this.openFile(file, "read");
    const stop = Math.min(end === undefined ? Infinity : end + 1, smbFileSize(handle));
    let position = start;
    let open = true;
    const closeHandle = async () => {
      if (!open) return;
      open = false;
      await client.close(handle);
    };
    const stream = new Readable({
      highWaterMark: READ_CHUNK,
      read() {
        if (position >= stop) {
          // Close before ending, so that a caller may delete the file as soon as the stream ends.
          closeHandle().then(
            () => this.push(null),
            (error: Error) => this.destroy(error),
          );
          return;
        }
        const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, stop - position));
        client.read(handle, buffer, 0, buffer.length, position).then(
          (read) => {
            if (read === 0) return this.destroy(new Error(`the file ended at ${position} bytes, before ${stop}`));
            position += read;
            this.push(buffer.subarray(0, read));
          },
          (error: Error) => this.destroy(error),
        );
      },
      destroy(error, callback) {
        closeHandle().then(
          () => callback(error),
          () => callback(error), // closing a handle of a broken connection may fail; the read's own error matters
        );
      },
    });
    return translateStreamErrors(stream, (error) => this.fail(error, "read", file));
  }

  async writeStream(path: string, source: Readable, options: WriteStreamOptions = {}): Promise<{ bytes: number }> {
    const file = this.check(path, "write");
    const sourceErrors = watchSourceErrors(source);
    const temporary = temporaryPathFor(file);
    let client: SmbClient | undefined;
    let sinkError: unknown;
    let bytes = 0;
    try {
      client = await this.connected();
      await this.makeFolders(client, parentOf(file));
      const handle = await client.open(this.smbPath(temporary), "wx");
      const session = client;
      const sink = new Writable({
        highWaterMark: READ_CHUNK,
        write(chunk: Buffer, _encoding, callback) {
          if (chunk.length === 0) return callback();
          session.write(handle, chunk, bytes).then(
            () => {
              bytes += chunk.length;
              callback();
            },
            (error: Error) => callback(error),
          );
        },
        final(callback) {
          // FLUSH before CLOSE: the server puts the data on disk before the rename makes it the file.
          session
            .flush(handle)
            .then(() => session.close(handle))
            .then(() => callback(), callback);
        },
        destroy(error, callback) {
          if (error === null) return callback(null);
          session.close(handle).then(
            () => callback(error),
            () => callback(error), // the write's own error matters more than a failed close
          );
        },
      });
      // pipeline() hands the first error to every stream: only an error the source did not raise is the sink's.
      sink.once("error", (error) => {
        if (!sourceErrors.failed(error)) sinkError = error;
      });
      await pipeline(source, sink, { signal: options.signal });
      await client.rename(this.smbPath(temporary), this.smbPath(file));
      await this.flushFolder(client, parentOf(file));
      return { bytes };
    } catch (error) {
      source.destroy();
      // A temporary we cannot remove keeps its temporary name, where cleaners look.
      await client?.unlink(this.smbPath(temporary)).catch(() => undefined);
      const fromSource = sourceErrors.failed(error) && error !== sinkError;
      if (fromSource || (error as Error | undefined)?.name === "AbortError") throw error;
      throw this.fail(error, "write", file);
    }
  }

  async writeFile(path: string, data: Uint8Array | string): Promise<void> {
    const buffer = typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.writeStream(path, Readable.from([buffer]));
  }

  /**
   * CREATE with disposition FILE_CREATE on the final name: the server creates the file only if no
   * entry has that name, which it decides atomically (Samba: open(2) with O_CREAT|O_EXCL), whatever
   * the number of clients. A temporary then rename without replace would not do: Samba stats the
   * target, then calls rename(2), which replaces, and another client can come between the two.
   * The price: until the data is written and flushed, a reader can see the file empty (a few ms for
   * a small file); on failure the file is removed, and only a connection lost mid-way can leave it
   * behind, empty or partial.
   */
  async writeFileExclusive(path: string, data: Uint8Array | string): Promise<boolean> {
    const file = this.check(path, "create");
    const buffer = typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let client: SmbClient | undefined;
    let handle: SmbFile | undefined;
    try {
      client = await this.connected();
      await this.makeFolders(client, parentOf(file));
      try {
        handle = await client.open(this.smbPath(file), "wx");
      } catch (error) {
        if (smbStatusOf(error) === "STATUS_OBJECT_NAME_COLLISION") return false;
        throw error;
      }
      if (buffer.length > 0) await client.write(handle, buffer, 0);
      await client.flush(handle);
      const written = handle;
      handle = undefined;
      await client.close(written);
      await this.flushFolder(client, parentOf(file));
      return true;
    } catch (error) {
      if (handle !== undefined) {
        // Ours and incomplete: it must not stand as if its content were whole.
        await client?.close(handle).catch(() => undefined);
        await client?.unlink(this.smbPath(file)).catch(() => undefined);
      }
      throw this.fail(error, "create", file);
    }
  }

  async readFile(path: string): Promise<Buffer> {
    return Buffer.concat(await (await this.createReadStream(path)).toArray());
  }

  async list(dir: string, options: { recursive?: boolean } = {}): Promise<string[]> {
    const folder = this.check(dir, "list", true);
    const client = await this.connected();
    try {
      const names =
        options.recursive === true
          ? await this.walk(client, folder, "")
          : (await client.readdir(this.smbPath(folder))).map((entry) => entry.name ?? "");
      return names.sort();
    } catch (error) {
      if (this.isMissing(error)) return [];
      throw this.fail(error, "list", folder);
    }
  }

  private async walk(client: SmbClient, folder: string, relative: string): Promise<string[]> {
    const files: string[] = [];
    for (const entry of await client.readdir(this.smbPath(joinRemotePath(folder, relative)))) {
      const path = joinRemotePath(relative, entry.name ?? "");
      if (entry.isDirectory()) files.push(...(await this.walk(client, folder, path)));
      else files.push(path);
    }
    return files;
  }

  async stat(path: string): Promise<FileStat> {
    const file = this.check(path, "stat");
    const client = await this.connected();
    const info = await client.stat(this.smbPath(file)).catch((error: unknown) => {
      throw this.fail(error, "stat", file);
    });
    if (info.isDirectory()) {
      throw new RemoteError({
        code: "NOT_FOUND",
        remote: this.name,
        operation: "stat",
        path: file,
        detail: "this is a folder, not a file",
      });
    }
    return { size: info.size, mtime: info.mtime };
  }

  async rename(from: string, to: string): Promise<void> {
    const source = this.check(from, "rename");
    const target = this.check(to, "rename");
    await this.stat(source);
    const client = await this.connected();
    try {
      await this.makeFolders(client, parentOf(target));
      await client.rename(this.smbPath(source), this.smbPath(target));
      await this.flushFolder(client, parentOf(target));
      // A move between folders also removes an entry from the source folder.
      if (parentOf(source) !== parentOf(target)) await this.flushFolder(client, parentOf(source));
    } catch (error) {
      throw this.fail(error, "rename", `${source}" to "${target}`);
    }
  }

  async delete(path: string): Promise<void> {
    const file = this.check(path, "delete");
    const client = await this.connected();
    try {
      await client.unlink(this.smbPath(file));
      await this.flushFolder(client, parentOf(file));
    } catch (error) {
      if (this.isMissing(error)) return;
      throw this.fail(error, "delete", file);
    }
  }

  async deleteTree(dir: string): Promise<void> {
    const folder = this.check(dir, "delete the tree");
    const client = await this.connected();
    try {
      await this.removeTree(client, folder);
      await this.flushFolder(client, parentOf(folder));
    } catch (error) {
      if (this.isMissing(error)) return;
      throw this.fail(error, "delete the tree", folder);
    }
  }

  private async removeTree(client: SmbClient, folder: string): Promise<void> {
    for (const entry of await client.readdir(this.smbPath(folder))) {
      const path = joinRemotePath(folder, entry.name ?? "");
      if (entry.isDirectory()) await this.removeTree(client, path);
      else await client.unlink(this.smbPath(path));
    }
    await client.rmdir(this.smbPath(folder));
  }

  async mkdir(dir: string): Promise<void> {
    const folder = this.check(dir, "create the folder");
    const client = await this.connected();
    await this.makeFolders(client, folder).catch((error: unknown) => {
      throw this.fail(error, "create the folder", folder);
    });
  }

  async spaceInfo(): Promise<SpaceInfo> {
    await this.open();
    return {}; // the client has no FileFsFullSizeInformation query
  }

  async openRandomAccess(path: string): Promise<RandomAccessFile> {
    const file = this.check(path, "open");
    const { client, file: handle } = await this.openFile(file, "open");
    const size = smbFileSize(handle);
    const where = { remote: this.name, path: file };
    let closed = false;
    return {
      size,
      read: async (offset: number, length: number): Promise<Buffer> => {
        if (closed) throw closedHandleError(where);
        checkReadWindow(offset, length, size, where);
        const buffer = Buffer.alloc(length);
        let done = 0;
        while (done < length) {
          const read = await client.read(handle, buffer, done, length - done, offset + done).catch((error: unknown) => {
            throw this.fail(error, "read", file);
          });
          if (read === 0) {
            throw new RemoteError({
              ...where,
              code: "IO",
              operation: "read",
              detail: `the file shrank below ${offset + length} bytes while open`,
            });
          }
          done += read;
        }
        return buffer;
      },
      close: async (): Promise<void> => {
        if (closed) return;
        closed = true;
        await client.close(handle).catch((error: unknown) => {
          throw this.fail(error, "close", file);
        });
      },
    };
  }

  isTemporaryName(nameOrPath: string): boolean {
    return isTemporaryName(nameOrPath);
  }
}
