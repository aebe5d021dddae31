import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { checkByteRange, checkReadWindow, closedHandleError } from "./remote-arguments.js";
import { RemoteError } from "./remote-error.js";
import { checkRemotePath, isTemporaryName, joinRemotePath, parentOf, temporaryPathFor } from "./remote-path.js";
import type { ByteRange, FileStat, RandomAccessFile, Remote, SpaceInfo, UpdatableFile, WriteStreamOptions } from "./remote.js";
import { ACCESS, DISPOSITION, SmbClient, type SmbHandle } from "./smb/client.js";
import type { SmbConnectionStats } from "./smb/connection.js";
import { SERVER_SHORT_OF_RESOURCES, fromSmbError, smbStatusOf } from "./smb-error.js";
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
  /** Time allowed for one SMB request (an interim STATUS_PENDING answer restarts it), in ms. @default 30 000 */
  timeoutMs?: number;
  /** Sign every request even where the server does not require it (SMB 3.x: AES-CMAC; 2.x: HMAC-SHA256). @default false */
  alwaysSign?: boolean;
  /** READ or WRITE requests kept in flight per stream or handle (memory: this many x 1 MiB). @default 8 */
  requestsInFlight?: number;
}

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

const READ_ACCESS = ACCESS.READ_DATA | ACCESS.READ_ATTRIBUTES | ACCESS.SYNCHRONIZE;
const WRITE_ACCESS = READ_ACCESS | ACCESS.WRITE_DATA | ACCESS.APPEND_DATA | ACCESS.WRITE_ATTRIBUTES;

/**
 * At most `depth` operations at once; the first failure is kept and given by {@link Window.drain}, and no new
 * operation starts after it.
 */
class Window {
  private readonly running = new Set<Promise<void>>();
  private error: unknown;
  private failed = false;

  constructor(private readonly depth: number) {}

  /** Starts `run` once a slot is free; resolves when it has started (or throws the first failure so far). */
  async add(run: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.depth && !this.failed) await Promise.race(this.running);
    if (this.failed) throw this.error;
    const task: Promise<void> = run().then(
      () => {
        this.running.delete(task);
      },
      (error: unknown) => {
        this.running.delete(task);
        if (!this.failed) {
          this.failed = true;
          this.error = error;
        }
      },
    );
    this.running.add(task);
  }

  /** Waits for everything started, then throws the first failure if any. */
  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.race(this.running);
    if (this.failed) throw this.error;
  }
}

/**
 * A remote on an SMB share, spoken to directly with our own SMB2/3 client (`smb/`, no kernel mount). Writes go to
 * `.name.tmp-<random>` in the target folder with several WRITE requests in flight, are flushed (SMB2 FLUSH: the server
 * fsyncs them), then renamed over the final name, as on a local folder; the folder is flushed after every change of its
 * entries (write, rename, delete, created sub-folder) where the server allows it. Reads keep several READ requests in
 * flight ahead of the consumer. Space figures come from FileFsFullSizeInformation.
 */
export class SmbRemote implements Remote {
  readonly kind = "SMB" as const;
  readonly name: string;
  private readonly options: SmbRemoteOptions;
  private readonly folder: string;
  private readonly depth: number;
  private client: SmbClient | undefined;
  private opening: Promise<SmbClient> | undefined;

  constructor(options: SmbRemoteOptions) {
    this.options = options;
    this.folder = (options.folder ?? "").replace(/^\/+|\/+$/g, "");
    this.depth = Math.max(1, options.requestsInFlight ?? 8);
    this.name = `SMB remote "//${options.host}:${options.port ?? 445}/${joinRemotePath(options.share, this.folder)}"`;
  }

  /** What the present connection counted (interim answers, signed requests); undefined when not connected. */
  get connectionStats(): SmbConnectionStats | undefined {
    return this.client?.connection.stats;
  }

  /** The dialect and signing of the present connection, e.g. `{ dialect: 0x311, signing: false }`. */
  get connectionInfo(): { dialect: number; signing: boolean } | undefined {
    const connection = this.client?.connection;
    return connection === undefined ? undefined : { dialect: connection.dialect, signing: connection.signing };
  }

  private fail(error: unknown, operation: string, path?: string): RemoteError {
    return fromSmbError(error, { remote: this.name, operation, path, secrets: [this.options.password] });
  }

  private check(path: string, operation: string, allowRoot = false): string {
    return checkRemotePath(path, { remote: this.name, operation, allowRoot });
  }

  private isMissing(error: unknown): boolean {
    const status = smbStatusOf(error);
    return status === "STATUS_OBJECT_NAME_NOT_FOUND" || status === "STATUS_OBJECT_PATH_NOT_FOUND";
  }

  private folderIsNotAFile(path: string, operation: string): RemoteError {
    return new RemoteError({ code: "NOT_FOUND", remote: this.name, operation, path, detail: "this is a folder, not a file" });
  }

  /** The SMB path of a remote path. */
  private smbPath(path: string): string {
    return joinRemotePath(this.folder, path).replace(/\//g, "\\");
  }

  async open(): Promise<void> {
    await this.connected();
  }

  /** The live client, connecting (once, shared by concurrent callers) when there is none or the last one broke. */
  private connected(): Promise<SmbClient> {
    if (this.client !== undefined && !this.client.usable) {
      this.client = undefined;
      this.opening = undefined;
    }
    this.opening ??= this.connect().catch((error: unknown) => {
      this.opening = undefined;
      throw error;
    });
    return this.opening;
  }

  /**
   * Connects; a server answering that it is short of resources (a loaded Samba refuses a TREE_CONNECT with NO_MEMORY) is
   * asked again twice, a moment later, before the open fails: the condition passes with the load, and failing a whole
   * backup target for it would be out of proportion. Any other failure is final at once.
   */
  private async connect(): Promise<SmbClient> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.connectOnce();
      } catch (error) {
        const status = smbStatusOf((error as { cause?: unknown }).cause);
        if (attempt >= 3 || status === undefined || !SERVER_SHORT_OF_RESOURCES.has(status)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 250 * attempt));
      }
    }
  }

  private async connectOnce(): Promise<SmbClient> {
    let client: SmbClient | undefined;
    try {
      client = await SmbClient.connect({
        host: this.options.host,
        port: this.options.port ?? 445,
        share: this.options.share,
        domain: this.options.domain ?? "WORKGROUP",
        username: this.options.username,
        password: this.options.password,
        timeoutMs: this.options.timeoutMs ?? 30_000,
        alwaysSign: this.options.alwaysSign,
      });
      const info = await client.stat(this.smbPath(""));
      if (!info.isDirectory) {
        throw new RemoteError({
          code: "ALREADY_EXISTS",
          remote: this.name,
          operation: "open",
          path: "",
          detail: "the remote's folder is a file",
        });
      }
    } catch (error) {
      client?.release();
      throw this.fail(error, "open", "");
    }
    this.client = client;
    return client;
  }

  async close(): Promise<void> {
    const client = this.client;
    this.opening = undefined;
    this.client = undefined;
    // Streams and handles still open keep the connection until they are closed.
    client?.release();
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

  /** Opens an existing file (not a folder). */
  private async openFile(path: string, operation: string, access: number): Promise<{ client: SmbClient; handle: SmbHandle }> {
    const client = await this.connected().catch((error: unknown) => {
      throw this.fail(error, operation, path);
    });
    const handle = await client
      .create(this.smbPath(path), { access, disposition: DISPOSITION.OPEN, file: true })
      .catch((error: unknown) => {
        if (smbStatusOf(error) === "STATUS_FILE_IS_A_DIRECTORY") throw this.folderIsNotAFile(path, operation);
        throw this.fail(error, operation, path);
      });
    return { client, handle };
  }

  /** `length` bytes at `offset` with several READ requests in flight; fewer only if the file ends first. */
  private async readRange(client: SmbClient, handle: SmbHandle, offset: number, length: number): Promise<Buffer> {
    const size = client.readSize;
    const pieces: Buffer[] = [];
    const window = new Window(this.depth);
    for (let at = 0, index = 0; at < length; at += size, index++) {
      const slot = index;
      const piece = Math.min(size, length - at);
      const position = offset + at;
      await window.add(async () => {
        pieces[slot] = await client.read(handle, position, piece);
      });
    }
    await window.drain();
    // A short piece means the file ended there: nothing after it counts.
    const whole: Buffer[] = [];
    for (const piece of pieces) {
      whole.push(piece);
      if (piece.length < size) break;
    }
    return whole.length === 1 ? whole[0] : Buffer.concat(whole);
  }

  /** Writes all of `data` at `offset`, split into WRITE requests with several in flight. */
  private async writeRange(client: SmbClient, handle: SmbHandle, offset: number, data: Buffer): Promise<void> {
    const size = client.writeSize;
    const window = new Window(this.depth);
    for (let at = 0; at < data.length; at += size) {
      const piece = data.subarray(at, Math.min(data.length, at + size));
      const position = offset + at;
      await window.add(() => client.write(handle, position, piece));
    }
    await window.drain();
  }

  async createReadStream(path: string, range?: ByteRange): Promise<Readable> {
    const file = this.check(path, "read");
    const { start, end } = checkByteRange(range, { remote: this.name, path: file });
    const { client, handle } = await this.openFile(file, "read", READ_ACCESS);
    const stop = Math.min(end === undefined ? Infinity : end + 1, handle.size);
    const chunk = client.readSize;
    const depth = this.depth;
    let closed = false;
    const closeHandle = async (): Promise<void> => {
      if (closed) return;
      closed = true;
      await client.close(handle);
    };
    async function* chunks(): AsyncGenerator<Buffer> {
      // Up to `depth` READs ahead of the consumer; each is caught at once so that one failing while others are awaited
      // is not an unhandled rejection (it is thrown when its turn comes).
      const ahead: { promise: Promise<Buffer>; failed?: unknown }[] = [];
      let next = start;
      try {
        while (next < stop || ahead.length > 0) {
          while (next < stop && ahead.length < depth) {
            const length = Math.min(chunk, stop - next);
            const position = next;
            const entry: { promise: Promise<Buffer>; failed?: unknown } = { promise: client.read(handle, position, length) };
            entry.promise.catch(() => undefined);
            ahead.push(entry);
            next += length;
          }
          const first = ahead.shift();
          if (first === undefined) break;
          const piece = await first.promise;
          if (piece.length === 0) throw new Error(`the file ended before byte ${stop}: it shrank while being read`);
          yield piece;
          if (piece.length < chunk && next < stop) throw new Error(`the file ended before byte ${stop}: it shrank while being read`);
        }
        // Closed before the stream ends, so that a caller may delete the file as soon as it sees the end.
        await closeHandle();
      } finally {
        // Closing a handle of a broken connection may fail; the read's own error matters more.
        await closeHandle().catch(() => undefined);
      }
    }
    const stream = Readable.from(chunks(), { objectMode: false, highWaterMark: chunk });
    return translateStreamErrors(stream, (error) => this.fail(error, "read", file));
  }

  async writeStream(path: string, source: Readable, options: WriteStreamOptions = {}): Promise<{ bytes: number }> {
    const file = this.check(path, "write");
    const sourceErrors = watchSourceErrors(source);
    const temporary = temporaryPathFor(file);
    let client: SmbClient | undefined;
    let sinkError: unknown;
    let created = false;
    // The sink closes its handle on destroy; the temporary can only be deleted once it is closed (the open handle does not
    // share delete access), so the cleanup below waits for it.
    let handleReleased: Promise<void> = Promise.resolve();
    let bytes = 0;
    try {
      client = await this.connected();
      await this.makeFolders(client, parentOf(file));
      const handle = await client.create(this.smbPath(temporary), { access: WRITE_ACCESS, disposition: DISPOSITION.CREATE, file: true });
      created = true;
      const session = client;
      const size = client.writeSize;
      const window = new Window(this.depth);
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let position = 0;
      let closed = false;
      /** Sends the pending bytes in requests of `size`, the tail too when `all`. */
      const send = async (all: boolean): Promise<void> => {
        while (pendingBytes >= size || (all && pendingBytes > 0)) {
          const joined = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
          const piece = joined.subarray(0, Math.min(size, joined.length));
          const rest = joined.subarray(piece.length);
          pending = rest.length > 0 ? [rest] : [];
          pendingBytes = rest.length;
          const at = position;
          position += piece.length;
          await window.add(() => session.write(handle, at, piece));
        }
      };
      const closeHandle = async (): Promise<void> => {
        if (closed) return;
        closed = true;
        await session.close(handle);
      };
      const sink = new Writable({
        highWaterMark: size,
        write(chunk: Buffer, _encoding, callback) {
          if (chunk.length === 0) return callback();
          pending.push(chunk);
          pendingBytes += chunk.length;
          bytes += chunk.length;
          send(false).then(() => callback(), callback);
        },
        final(callback) {
          // Every WRITE answered, then FLUSH before CLOSE: the server puts the data on disk before the rename makes it the file.
          send(true)
            .then(() => window.drain())
            .then(() => session.flush(handle))
            .then(closeHandle)
            .then(() => callback(), callback);
        },
        destroy(error, callback) {
          handleReleased = window
            .drain()
            .catch(() => undefined)
            .then(closeHandle)
            .catch(() => undefined); // the write's own error matters more than a failed close
          handleReleased.then(() => callback(error));
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
      await handleReleased;
      // A temporary we cannot remove keeps its temporary name, where cleaners look.
      if (created) await client?.unlink(this.smbPath(temporary)).catch(() => undefined);
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
    let handle: SmbHandle | undefined;
    try {
      client = await this.connected();
      await this.makeFolders(client, parentOf(file));
      try {
        handle = await client.create(this.smbPath(file), { access: WRITE_ACCESS, disposition: DISPOSITION.CREATE, file: true });
      } catch (error) {
        if (smbStatusOf(error) === "STATUS_OBJECT_NAME_COLLISION") return false;
        throw error;
      }
      if (buffer.length > 0) await this.writeRange(client, handle, 0, buffer);
      await client.flush(handle);
      const written = handle;
      handle = undefined;
      await client.close(written);
      await this.flushFolder(client, parentOf(file));
      return true;
    } catch (error) {
      if (handle !== undefined) {
        // Ours and incomplete: it must not stand as if its content were whole.
        await client?.setDeleteOnClose(handle).catch(() => undefined);
        await client?.close(handle).catch(() => undefined);
      }
      throw this.fail(error, "create", file);
    }
  }

  async readFile(path: string): Promise<Buffer> {
    return Buffer.concat(await (await this.createReadStream(path)).toArray());
  }

  async list(dir: string, options: { recursive?: boolean } = {}): Promise<string[]> {
    const folder = this.check(dir, "list", true);
    try {
      const client = await this.connected();
      const names =
        options.recursive === true
          ? await this.walk(client, folder, "")
          : (await client.readdir(this.smbPath(folder))).map((entry) => entry.name);
      return names.sort();
    } catch (error) {
      if (this.isMissing(error)) return [];
      throw this.fail(error, "list", folder);
    }
  }

  private async walk(client: SmbClient, folder: string, relative: string): Promise<string[]> {
    const files: string[] = [];
    for (const entry of await client.readdir(this.smbPath(joinRemotePath(folder, relative)))) {
      const path = joinRemotePath(relative, entry.name);
      if (entry.isDirectory) files.push(...(await this.walk(client, folder, path)));
      else files.push(path);
    }
    return files;
  }

  async stat(path: string): Promise<FileStat> {
    const file = this.check(path, "stat");
    let info: SmbHandle;
    try {
      info = await (await this.connected()).stat(this.smbPath(file));
    } catch (error) {
      throw this.fail(error, "stat", file);
    }
    if (info.isDirectory) throw this.folderIsNotAFile(file, "stat");
    return { size: info.size, mtime: info.mtime };
  }

  async rename(from: string, to: string): Promise<void> {
    const source = this.check(from, "rename");
    const target = this.check(to, "rename");
    await this.stat(source);
    try {
      const client = await this.connected();
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
    try {
      const client = await this.connected();
      await client.unlink(this.smbPath(file));
      await this.flushFolder(client, parentOf(file));
    } catch (error) {
      if (this.isMissing(error)) return;
      throw this.fail(error, "delete", file);
    }
  }

  async deleteTree(dir: string): Promise<void> {
    const folder = this.check(dir, "delete the tree");
    try {
      const client = await this.connected();
      await this.removeTree(client, folder);
      await this.flushFolder(client, parentOf(folder));
    } catch (error) {
      if (this.isMissing(error)) return;
      throw this.fail(error, "delete the tree", folder);
    }
  }

  private async removeTree(client: SmbClient, folder: string): Promise<void> {
    const entries = await client.readdir(this.smbPath(folder));
    const window = new Window(this.depth);
    for (const entry of entries) {
      const path = joinRemotePath(folder, entry.name);
      await window.add(() => (entry.isDirectory ? this.removeTree(client, path) : client.unlink(this.smbPath(path))));
    }
    await window.drain();
    await client.rmdir(this.smbPath(folder));
  }

  async mkdir(dir: string): Promise<void> {
    const folder = this.check(dir, "create the folder", true);
    try {
      await this.makeFolders(await this.connected(), folder);
    } catch (error) {
      throw this.fail(error, "create the folder", folder);
    }
  }

  /** The share's free and total bytes as the server reports them to this user (FileFsFullSizeInformation). */
  async spaceInfo(): Promise<SpaceInfo> {
    try {
      const { totalBytes, freeBytes } = await (await this.connected()).spaceOf(this.smbPath(""));
      return { totalBytes, freeBytes, usedBytes: Math.max(0, totalBytes - freeBytes) };
    } catch (error) {
      throw this.fail(error, "read the free space of", "");
    }
  }

  async openRandomAccess(path: string): Promise<RandomAccessFile> {
    const file = this.check(path, "open");
    const { client, handle } = await this.openFile(file, "open", READ_ACCESS);
    const size = handle.size;
    const where = { remote: this.name, path: file };
    let closed = false;
    return {
      size,
      read: async (offset: number, length: number): Promise<Buffer> => {
        if (closed) throw closedHandleError(where);
        checkReadWindow(offset, length, size, where);
        const buffer = await this.readRange(client, handle, offset, length).catch((error: unknown) => {
          throw this.fail(error, "read", file);
        });
        if (buffer.length < length) {
          throw new RemoteError({
            ...where,
            code: "IO",
            operation: "read",
            detail: `the file shrank below ${offset + length} bytes while open`,
          });
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

  /**
   * A handle opened for reads and writes (FILE_OPEN with read and write data access; others may still read it). Writes
   * go out as WRITE requests with several in flight and resolve once the server answered all of them; `truncate` is
   * SET_INFO FileEndOfFileInformation; `sync` is FLUSH (Samba: fsync(2)).
   */
  async openForUpdate(path: string): Promise<UpdatableFile> {
    const file = this.check(path, "open for update");
    const { client, handle } = await this.openFile(file, "open for update", WRITE_ACCESS);
    const where = { remote: this.name, path: file };
    let size = handle.size;
    let closed = false;
    const refuse = (operation: string, detail: string): RemoteError =>
      new RemoteError({ ...where, code: "INVALID_ARGUMENT", operation, detail });
    const ensureOpen = (operation: string): void => {
      if (closed) throw refuse(operation, "the file was closed");
    };
    const checkOffset = (operation: string, name: string, value: unknown): void => {
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
        throw refuse(operation, `${name} must be a non-negative integer, got ${String(value)}`);
      }
    };
    const fail = (operation: string) => (error: unknown) => {
      throw this.fail(error, operation, file);
    };
    return {
      get size() {
        return size;
      },
      read: async (offset: number, length: number): Promise<Buffer> => {
        ensureOpen("read");
        checkReadWindow(offset, length, size, where);
        const buffer = await this.readRange(client, handle, offset, length).catch(fail("read"));
        if (buffer.length < length) {
          throw new RemoteError({
            ...where,
            code: "IO",
            operation: "read",
            detail: `the file shrank below ${offset + length} bytes while open`,
          });
        }
        return buffer;
      },
      write: async (offset: number, data: Uint8Array): Promise<void> => {
        ensureOpen("write");
        checkOffset("write", "offset", offset);
        if (!(data instanceof Uint8Array)) throw refuse("write", "the data must be bytes (a Uint8Array)");
        const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        await this.writeRange(client, handle, offset, bytes).catch(fail("write"));
        size = Math.max(size, offset + data.length);
      },
      truncate: async (length: number): Promise<void> => {
        ensureOpen("truncate");
        checkOffset("truncate", "size", length);
        await client.setEndOfFile(handle, length).catch(fail("truncate"));
        size = length;
      },
      sync: async (): Promise<void> => {
        ensureOpen("sync");
        await client.flush(handle).catch(fail("sync"));
      },
      close: async (): Promise<void> => {
        if (closed) return;
        closed = true;
        await client.close(handle).catch(fail("close"));
      },
    };
  }

  isTemporaryName(nameOrPath: string): boolean {
    return isTemporaryName(nameOrPath);
  }
}
