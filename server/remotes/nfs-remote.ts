import { randomBytes } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fromNfsError, nfsStatusOf } from "./nfs-error.js";
import {
  Access,
  type Attributes,
  type FileHandle,
  FileType,
  MOUNT_PROGRAM,
  MountClient,
  NFS_PROGRAM,
  Nfs3Client,
  Nfs3Error,
  Stable,
  getPort,
} from "./nfs/nfs3.js";
import { UnstableWriter } from "./nfs/unstable-writer.js";
import { checkByteRange, checkReadWindow } from "./remote-arguments.js";
import { RemoteError } from "./remote-error.js";
import { baseNameOf, checkRemotePath, isTemporaryName, joinRemotePath, parentOf, temporaryPathFor } from "./remote-path.js";
import type { ByteRange, FileStat, RandomAccessFile, Remote, SpaceInfo, UpdatableFile, WriteStreamOptions } from "./remote.js";
import { asWriteAbortError, translateStreamErrors, watchSourceErrors } from "./stream-errors.js";

/** How an {@link NfsRemote} reaches its export. */
export interface NfsRemoteOptions {
  host: string;
  /** The NFS port; asked of the portmapper (port 111) when absent, 2049 if it does not know. */
  port?: number;
  /** The export's path on the server, as MOUNT takes it ("/srv/backups"). */
  exportPath: string;
  /** A folder inside the export holding everything of this remote ("" = the export's root). @default "" */
  folder?: string;
  /** The MOUNT port; asked of the portmapper when absent. */
  mountPort?: number;
  /** AUTH_SYS identity. @default 0 */
  uid?: number;
  /** @default 0 */
  gid?: number;
  /** Time allowed to connect and for each request, in ms. @default 30 000 */
  timeoutMs?: number;
}

const MIB = 1024 * 1024;
/** At most this much per READ or WRITE, whatever the server allows: more only grows the memory per request. */
const MAX_TRANSFER = MIB;
/** READs in flight ahead of the reader. */
const READ_AHEAD = 4;
/** WRITEs in flight at once. */
const WRITES_IN_FLIGHT = 4;
/** Uncommitted bytes a stream keeps (for a resend after a server restart) before it COMMITs on its own. */
const STREAM_WINDOW = 16 * MIB;
/** The same for a file open for update: merges write scattered blocks and sync at their own points. */
const UPDATE_WINDOW = 32 * MIB;
const FILE_MODE = 0o644;
/** MOUNT answers meaning "not an export here", after which a shorter leading part of the path is tried. */
const MOUNT_NOT_AN_EXPORT = new Set(["MNT3ERR_NOENT", "MNT3ERR_NOTDIR", "MNT3ERR_ACCES"]);
const FOLDER_MODE = 0o755;

/** An open connection to the export: its NFS client, the handle of the remote's folder and the transfer sizes. */
interface Session {
  nfs: Nfs3Client;
  base: FileHandle;
  readBytes: number;
  writeBytes: number;
  /** Streams, writes and handles using it: its connection outlives `close()` until they end. */
  users: number;
  /** Given up by `close()` (or after a lost connection): no new call takes it. */
  retired: boolean;
}

function transferSize(max: number): number {
  // A server that states no limit (0) gets a size every server takes.
  if (max <= 0) return 64 * 1024;
  return Math.min(max, MAX_TRANSFER);
}

/**
 * A remote on an NFSv3 export, spoken to directly over TCP (no kernel mount, no root): the client in `nfs/` (see its
 * README.md and PROTOCOL.md). Writes go to `.name.tmp-<random>` in the target folder with UNSTABLE WRITEs (several in
 * flight), are COMMITted, then renamed over the final name; NFSv3 servers answer CREATE, RENAME, REMOVE and MKDIR only
 * once done (the protocol's synchronous namespace operations), so the folder needs nothing more from us.
 */
export class NfsRemote implements Remote {
  readonly kind = "NFS" as const;
  readonly name: string;
  private readonly options: NfsRemoteOptions;
  private readonly folder: string;
  private session: Session | undefined;
  private opening: Promise<Session> | undefined;
  /** The export MOUNT accepted (a leading part of the configured path). */
  private mountedExport: string | undefined;

  constructor(options: NfsRemoteOptions) {
    this.options = options;
    this.folder = (options.folder ?? "").replace(/^\/+|\/+$/g, "");
    const port = options.port === undefined ? "" : `:${options.port}`;
    const exportPath = `/${options.exportPath.replace(/^\/+/, "")}`.replace(/\/+$/, "") || "/";
    const host = options.host.includes(":") ? `[${options.host}]` : options.host;
    this.name = `NFS remote "nfs://${host}${port}${joinRemotePath(exportPath, this.folder).replace(/^\/?/, "/")}"`;
  }

  private fail(error: unknown, operation: string, path?: string): RemoteError {
    const wrapped = fromNfsError(error, { remote: this.name, operation, path });
    // A lost connection or a stale handle is not reused: the next call mounts afresh.
    if (wrapped.code === "UNREACHABLE") void this.close();
    return wrapped;
  }

  private check(path: string, operation: string, allowRoot = false): string {
    return checkRemotePath(path, { remote: this.name, operation, allowRoot });
  }

  private notFound(operation: string, path: string, detail: string): RemoteError {
    return new RemoteError({ code: "NOT_FOUND", remote: this.name, operation, path, detail });
  }

  async open(): Promise<void> {
    await this.connected();
  }

  private connected(): Promise<Session> {
    if (this.session !== undefined) return Promise.resolve(this.session);
    this.opening ??= this.connect().then(
      (session) => {
        this.session = session;
        this.opening = undefined;
        return session;
      },
      (error: unknown) => {
        this.opening = undefined;
        throw error;
      },
    );
    return this.opening;
  }

  private async connect(): Promise<Session> {
    const { host, exportPath } = this.options;
    const timeoutMs = this.options.timeoutMs ?? 30_000;
    const auth = { uid: this.options.uid ?? 0, gid: this.options.gid ?? 0 };
    let nfs: Nfs3Client | undefined;
    try {
      const nfsPort = this.options.port ?? ((await getPort(host, NFS_PROGRAM, 3, timeoutMs).catch(() => 0)) || 2049);
      const mountPort = this.options.mountPort ?? (await getPort(host, MOUNT_PROGRAM, 3, timeoutMs));
      if (mountPort === 0) {
        throw new RemoteError({
          code: "UNREACHABLE",
          remote: this.name,
          operation: "open",
          detail: `the portmapper of ${host} knows no MOUNT version 3 service over TCP`,
          hint: "give the MOUNT port as options.mountPort, or start the server's mountd",
        });
      }
      const mount = new MountClient({ host, port: mountPort, auth, timeoutMs });
      let mounted: { root: FileHandle; exportPath: string; folder: string };
      try {
        mounted = await this.mountLongest(mount, exportPath, this.folder);
      } finally {
        mount.close();
      }
      this.mountedExport = mounted.exportPath;
      nfs = new Nfs3Client({ host, port: nfsPort, auth, timeoutMs });
      let base = mounted.root;
      for (const segment of mounted.folder === "" ? [] : mounted.folder.split("/")) base = (await nfs.lookup(base, segment)).handle;
      const attributes = await nfs.getattr(base);
      if (attributes.type !== FileType.DIR) throw this.notFound("open", "", "the remote's folder is a file");
      const wanted = Access.LOOKUP | Access.MODIFY | Access.EXTEND | Access.DELETE;
      const granted = await nfs.access(base, wanted);
      if ((granted & wanted) !== wanted) {
        throw new RemoteError({
          code: "PERMISSION_DENIED",
          remote: this.name,
          operation: "open",
          path: "",
          detail: `uid ${auth.uid} / gid ${auth.gid} may not create and delete files in the remote's folder (the export may be read-only)`,
          hint: "export the folder read-write to this machine, and set options.uid and options.gid to an owner of the folder",
        });
      }
      const info = await nfs.fsinfo(base);
      return { nfs, base, readBytes: transferSize(info.rtmax), writeBytes: transferSize(info.wtmax), users: 0, retired: false };
    } catch (error) {
      nfs?.close();
      throw this.fail(error, "open", "");
    }
  }

  /**
   * MOUNTs `exportPath`, or, when the server refuses it as an export (as for a folder inside an export on servers that
   * mount only whole exports), the longest leading part of it that it mounts, the rest becoming the folder. The first
   * refusal is what fails when no part mounts.
   */
  private async mountLongest(
    mount: MountClient,
    exportPath: string,
    folder: string,
  ): Promise<{ root: FileHandle; exportPath: string; folder: string }> {
    const segments = exportPath.split("/").filter((segment) => segment !== "");
    let firstError: unknown;
    for (let keep = segments.length; keep >= 0; keep--) {
      const candidate = `/${segments.slice(0, keep).join("/")}`;
      try {
        const root = await mount.mount(candidate);
        return { root, exportPath: candidate, folder: joinRemotePath(...segments.slice(keep), folder) };
      } catch (error) {
        firstError ??= error;
        // ganesha and Linux's mountd answer MNT3ERR_ACCES, not NOENT, for a path they do not export.
        if (!MOUNT_NOT_AN_EXPORT.has(nfsStatusOf(error) ?? "")) throw error;
      }
    }
    throw firstError;
  }

  async close(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    this.opening = undefined;
    if (session === undefined) return;
    session.retired = true;
    if (session.users === 0) session.nfs.close();
    const { host, exportPath, mountPort } = this.options;
    if (mountPort === undefined) return; // UMNT is advisory: not worth a portmapper round trip on close
    // Tells the server's mount list we are gone; advisory (RFC 1813 appendix I), so a failure is let be.
    const mount = new MountClient({
      host,
      port: mountPort,
      auth: { uid: this.options.uid ?? 0, gid: this.options.gid ?? 0 },
      timeoutMs: 2000,
    });
    await mount.unmount(this.mountedExport ?? exportPath).catch(() => undefined);
    mount.close();
  }

  /** Marks `session` in use until the returned release is called (idempotent), so that `close()` leaves it open meanwhile. */
  private retain(session: Session): () => void {
    session.users += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      session.users -= 1;
      if (session.retired && session.users === 0) session.nfs.close();
    };
  }

  /** The handle and attributes of a remote path; NFS3ERR_NOENT when a segment is missing or is a file on the way. */
  private async resolve(session: Session, path: string): Promise<{ handle: FileHandle; attributes: Attributes }> {
    let handle = session.base;
    let attributes: Attributes | undefined;
    for (const segment of path === "" ? [] : path.split("/")) {
      try {
        ({ handle, attributes } = await session.nfs.lookup(handle, segment));
      } catch (error) {
        if (nfsStatusOf(error) === "NFS3ERR_NOTDIR") throw new Nfs3Error("NFS3ERR_NOENT", "LOOKUP");
        throw error;
      }
    }
    return { handle, attributes: attributes ?? (await session.nfs.getattr(handle)) };
  }

  private isMissing(error: unknown): boolean {
    return nfsStatusOf(error) === "NFS3ERR_NOENT";
  }

  /** The handle of folder `path`, creating it and its parents as needed. */
  private async makeFolders(session: Session, path: string): Promise<FileHandle> {
    let handle = session.base;
    for (const segment of path === "" ? [] : path.split("/")) {
      const parent = handle;
      const found = await session.nfs.lookup(parent, segment).catch((error: unknown) => {
        if (this.isMissing(error)) return undefined;
        throw error;
      });
      if (found === undefined) {
        const made = await session.nfs.mkdir(parent, segment, FOLDER_MODE).catch((error: unknown) => {
          // Another client made it meanwhile.
          if (nfsStatusOf(error) === "NFS3ERR_EXIST") return undefined;
          throw error;
        });
        handle = made?.handle ?? (await session.nfs.lookup(parent, segment)).handle;
        continue;
      }
      const type = found.attributes?.type ?? (await session.nfs.getattr(found.handle)).type;
      if (type !== FileType.DIR) throw new Nfs3Error("NFS3ERR_NOTDIR", "LOOKUP");
      handle = found.handle;
    }
    return handle;
  }

  /** A regular file's handle and attributes; NOT_FOUND when missing or a folder. */
  private async openFile(path: string, operation: string): Promise<{ session: Session; handle: FileHandle; attributes: Attributes }> {
    const session = await this.connected();
    const found = await this.resolve(session, path).catch((error: unknown) => {
      throw this.fail(error, operation, path);
    });
    if (found.attributes.type === FileType.DIR) throw this.notFound(operation, path, "this is a folder, not a file");
    return { session, ...found };
  }

  /** Exactly `length` bytes at `offset`, in READs of the session's size sent at once; IO if the file ends before. */
  private async readExactly(session: Session, handle: FileHandle, offset: number, length: number): Promise<Buffer> {
    const pieces: Promise<Buffer>[] = [];
    for (let at = 0; at < length; at += session.readBytes) {
      pieces.push(this.readPiece(session, handle, offset + at, Math.min(session.readBytes, length - at)));
    }
    const buffers = await Promise.all(pieces);
    return buffers.length === 1 ? buffers[0] : Buffer.concat(buffers, length);
  }

  private async readPiece(session: Session, handle: FileHandle, offset: number, length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let done = 0;
    while (done < length) {
      const { data, eof } = await session.nfs.read(handle, offset + done, length - done);
      parts.push(data);
      done += data.length;
      if (done < length && (eof || data.length === 0)) {
        throw new Error(`the file ended at ${offset + done} bytes, before ${offset + length}: it shrank while being read`);
      }
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, length);
  }

  async createReadStream(path: string, range?: ByteRange): Promise<Readable> {
    const file = this.check(path, "read");
    const { start, end } = checkByteRange(range, { remote: this.name, path: file });
    const { session, handle, attributes } = await this.openFile(file, "read");
    const stop = Math.min(end === undefined ? Number.POSITIVE_INFINITY : end + 1, attributes.size);
    const self = this;
    async function* chunks(): AsyncGenerator<Buffer> {
      // READ_AHEAD requests stay in flight ahead of the consumer; the generator runs only as fast as it reads.
      const ahead: Promise<Buffer>[] = [];
      let next = start;
      const launch = () => {
        const length = Math.min(session.readBytes, stop - next);
        const piece = self.readPiece(session, handle, next, length);
        piece.catch(() => undefined); // awaited in order below; this only keeps an abandoned one from being unhandled
        ahead.push(piece);
        next += length;
      };
      while (next < stop && ahead.length < READ_AHEAD) launch();
      while (ahead.length > 0) {
        const data = await (ahead.shift() as Promise<Buffer>);
        if (next < stop) launch();
        yield data;
      }
    }
    const stream = Readable.from(chunks(), { objectMode: false, highWaterMark: session.readBytes });
    stream.once("close", this.retain(session));
    return translateStreamErrors(stream, (error) => this.fail(error, "read", file));
  }

  async writeStream(path: string, source: Readable, options: WriteStreamOptions = {}): Promise<{ bytes: number }> {
    const file = this.check(path, "write");
    const sourceErrors = watchSourceErrors(source);
    const temporary = baseNameOf(temporaryPathFor(file));
    let session: Session | undefined;
    let folder: FileHandle | undefined;
    let writer: UnstableWriter | undefined;
    let release: (() => void) | undefined;
    let sinkError: unknown;
    let bytes = 0;
    try {
      options.signal?.throwIfAborted();
      session = await this.connected();
      release = this.retain(session);
      folder = await this.makeFolders(session, parentOf(file));
      const created = await session.nfs.create(folder, temporary, { guarded: { mode: FILE_MODE } });
      const handle = created.handle ?? (await session.nfs.lookup(folder, temporary)).handle;
      const unstable = new UnstableWriter(session.nfs, handle, {
        pieceBytes: session.writeBytes,
        inFlight: WRITES_IN_FLIGHT,
        windowBytes: STREAM_WINDOW,
      });
      writer = unstable;
      const pieceBytes = session.writeBytes;
      let gathered: Buffer[] = [];
      let gatheredBytes = 0;
      const sendGathered = async () => {
        if (gatheredBytes === 0) return;
        const piece = gathered.length === 1 ? gathered[0] : Buffer.concat(gathered, gatheredBytes);
        const offset = bytes;
        bytes += piece.length;
        gathered = [];
        gatheredBytes = 0;
        await unstable.write(offset, piece);
      };
      const sink = new Writable({
        highWaterMark: pieceBytes,
        write(chunk: Buffer, _encoding, callback) {
          gathered.push(chunk);
          gatheredBytes += chunk.length;
          if (gatheredBytes < pieceBytes) return callback();
          sendGathered().then(() => callback(), callback);
        },
        final(callback) {
          sendGathered()
            .then(() => unstable.commit())
            .then(() => callback(), callback);
        },
      });
      // pipeline() hands the first error to every stream: only an error the source did not raise is the sink's.
      sink.once("error", (error) => {
        if (!sourceErrors.failed(error)) sinkError = error;
      });
      await pipeline(source, sink, { signal: options.signal });
      await session.nfs.rename(folder, temporary, folder, baseNameOf(file));
      return { bytes };
    } catch (error) {
      source.destroy();
      await writer?.settle();
      // A temporary we cannot remove keeps its temporary name, where cleaners look.
      if (session !== undefined && folder !== undefined) await session.nfs.remove(folder, temporary).catch(() => undefined);
      const fromSource = sourceErrors.failed(error) && error !== sinkError;
      if (fromSource) throw error;
      throw asWriteAbortError(error, options.signal) ?? this.fail(error, "write", file);
    } finally {
      release?.();
    }
  }

  async writeFile(path: string, data: Uint8Array | string): Promise<void> {
    const buffer = typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.writeStream(path, Readable.from([buffer]));
  }

  /**
   * CREATE EXCLUSIVE on the final name (RFC 1813 section 3.3.8): the server creates the file only if nothing has the name,
   * atomically for every client, and recognises a retransmission of our own request by its verifier. Then SETATTR (the
   * verifier is kept in the times until then), WRITE FILE_SYNC. Until written, a reader may see the file empty; a failure
   * removes it. A server without EXCLUSIVE (NFS3ERR_NOTSUPP) gets GUARDED, as atomic short of the retransmission case.
   */
  async writeFileExclusive(path: string, data: Uint8Array | string): Promise<boolean> {
    const file = this.check(path, "create");
    const buffer = typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const name = baseNameOf(file);
    let session: Session | undefined;
    let folder: FileHandle | undefined;
    let created = false;
    try {
      session = await this.connected();
      folder = await this.makeFolders(session, parentOf(file));
      const nfs = session.nfs;
      const where = folder;
      let answer: { handle?: FileHandle };
      try {
        answer = await nfs.create(where, name, { exclusive: randomBytes(8) }).catch((error: unknown) => {
          if (nfsStatusOf(error) !== "NFS3ERR_NOTSUPP") throw error;
          return nfs.create(where, name, { guarded: { mode: FILE_MODE } });
        });
      } catch (error) {
        if (nfsStatusOf(error) === "NFS3ERR_EXIST") return false;
        throw error;
      }
      created = true;
      const handle = answer.handle ?? (await nfs.lookup(folder, name)).handle;
      await nfs.setattr(handle, { mode: FILE_MODE, mtimeNow: true });
      let done = 0;
      while (done < buffer.length) {
        const piece = buffer.subarray(done, done + session.writeBytes);
        const { count } = await nfs.write(handle, done, piece, Stable.FILE_SYNC);
        if (count === 0) throw new Error("the server stored none of the bytes");
        done += count;
      }
      return true;
    } catch (error) {
      // Ours and incomplete: it must not stand as if its content were whole.
      if (created && session !== undefined && folder !== undefined) await session.nfs.remove(folder, name).catch(() => undefined);
      throw this.fail(error, "create", file);
    }
  }

  async readFile(path: string): Promise<Buffer> {
    return Buffer.concat(await (await this.createReadStream(path)).toArray());
  }

  async list(dir: string, options: { recursive?: boolean } = {}): Promise<string[]> {
    const folder = this.check(dir, "list", true);
    const session = await this.connected();
    try {
      const { handle, attributes } = await this.resolve(session, folder);
      if (attributes.type !== FileType.DIR) return [];
      const names =
        options.recursive === true
          ? await this.walk(session, handle, "")
          : (await session.nfs.readdirplus(handle)).map((entry) => entry.name);
      return names.sort();
    } catch (error) {
      if (this.isMissing(error)) return [];
      throw this.fail(error, "list", folder);
    }
  }

  private async walk(session: Session, folder: FileHandle, relative: string): Promise<string[]> {
    const files: string[] = [];
    for (const entry of await session.nfs.readdirplus(folder)) {
      const path = joinRemotePath(relative, entry.name);
      const { handle, type } = await this.entryDetails(session, folder, entry);
      if (type === FileType.DIR) files.push(...(await this.walk(session, handle, path)));
      else files.push(path);
    }
    return files;
  }

  /** An entry's handle and type, looked up when READDIRPLUS left them out. */
  private async entryDetails(
    session: Session,
    folder: FileHandle,
    entry: { name: string; handle?: FileHandle; attributes?: Attributes },
  ): Promise<{ handle: FileHandle; type: number }> {
    if (entry.handle !== undefined && entry.attributes !== undefined) return { handle: entry.handle, type: entry.attributes.type };
    const found = await session.nfs.lookup(folder, entry.name);
    return { handle: found.handle, type: (found.attributes ?? (await session.nfs.getattr(found.handle))).type };
  }

  async stat(path: string): Promise<FileStat> {
    const file = this.check(path, "stat");
    const { attributes } = await this.openFile(file, "stat");
    return { size: attributes.size, mtime: attributes.mtime };
  }

  async rename(from: string, to: string): Promise<void> {
    const source = this.check(from, "rename");
    const target = this.check(to, "rename");
    await this.stat(source);
    const session = await this.connected();
    try {
      const fromFolder = (await this.resolve(session, parentOf(source))).handle;
      const toFolder = await this.makeFolders(session, parentOf(target));
      await session.nfs.rename(fromFolder, baseNameOf(source), toFolder, baseNameOf(target));
    } catch (error) {
      throw this.fail(error, "rename", `${source}" to "${target}`);
    }
  }

  async delete(path: string): Promise<void> {
    const file = this.check(path, "delete");
    const session = await this.connected();
    try {
      const folder = (await this.resolve(session, parentOf(file))).handle;
      await session.nfs.remove(folder, baseNameOf(file));
    } catch (error) {
      if (this.isMissing(error)) return;
      throw this.fail(error, "delete", file);
    }
  }

  async deleteTree(dir: string): Promise<void> {
    const folder = this.check(dir, "delete the tree");
    const session = await this.connected();
    try {
      const parent = (await this.resolve(session, parentOf(folder))).handle;
      const { handle, attributes } = await this.resolve(session, folder);
      if (attributes.type === FileType.DIR) {
        await this.emptyFolder(session, handle);
        await session.nfs.rmdir(parent, baseNameOf(folder));
      } else {
        await session.nfs.remove(parent, baseNameOf(folder));
      }
    } catch (error) {
      if (this.isMissing(error)) return;
      throw this.fail(error, "delete the tree", folder);
    }
  }

  private async emptyFolder(session: Session, folder: FileHandle): Promise<void> {
    for (const entry of await session.nfs.readdirplus(folder)) {
      const { handle, type } = await this.entryDetails(session, folder, entry);
      if (type === FileType.DIR) {
        await this.emptyFolder(session, handle);
        await session.nfs.rmdir(folder, entry.name);
      } else {
        await session.nfs.remove(folder, entry.name);
      }
    }
  }

  async mkdir(dir: string): Promise<void> {
    const folder = this.check(dir, "create the folder", true);
    const session = await this.connected();
    await this.makeFolders(session, folder).catch((error: unknown) => {
      throw this.fail(error, "create the folder", folder);
    });
  }

  async spaceInfo(): Promise<SpaceInfo> {
    const session = await this.connected();
    try {
      const space = await session.nfs.fsstat(session.base);
      return { freeBytes: space.availableBytes, totalBytes: space.totalBytes, usedBytes: Math.max(0, space.totalBytes - space.freeBytes) };
    } catch (error) {
      throw this.fail(error, "measure the space of", "");
    }
  }

  async openRandomAccess(path: string): Promise<RandomAccessFile> {
    const file = this.check(path, "open");
    const { session, handle, attributes } = await this.openFile(file, "open");
    const size = attributes.size;
    const where = { remote: this.name, path: file };
    const release = this.retain(session);
    let closed = false;
    return {
      size,
      read: async (offset: number, length: number): Promise<Buffer> => {
        if (closed) throw this.closedError("read", file);
        checkReadWindow(offset, length, size, where);
        return this.readExactly(session, handle, offset, length).catch((error: unknown) => {
          throw this.readFailure(error, file, offset + length);
        });
      },
      close: async (): Promise<void> => {
        closed = true;
        release();
      },
    };
  }

  /** A read that hit the end of the file early is IO (the file shrank), anything else as the server said. */
  private readFailure(error: unknown, file: string, end: number): RemoteError {
    if (error instanceof Error && error.message.includes("shrank")) {
      return new RemoteError({
        code: "IO",
        remote: this.name,
        operation: "read",
        path: file,
        detail: `the file shrank below ${end} bytes while open`,
        cause: error,
      });
    }
    return this.fail(error, "read", file);
  }

  private closedError(operation: string, path: string): RemoteError {
    return new RemoteError({ code: "INVALID_ARGUMENT", remote: this.name, operation, path, detail: "the file handle is closed" });
  }

  /**
   * The file, open to read and write in place. Writes are UNSTABLE and several in flight; `sync` COMMITs them (and sends
   * again, FILE_SYNC, what a restarted server lost); at most 32 MiB stay uncommitted, a COMMIT is sent on our own beyond.
   * Reads and truncates wait for the writes sent before them, so they see them.
   */
  async openForUpdate(path: string): Promise<UpdatableFile> {
    const file = this.check(path, "open");
    const { session, handle, attributes } = await this.openFile(file, "open");
    const writer = new UnstableWriter(session.nfs, handle, {
      pieceBytes: session.writeBytes,
      inFlight: WRITES_IN_FLIGHT,
      windowBytes: UPDATE_WINDOW,
    });
    const where = { remote: this.name, path: file };
    let size = attributes.size;
    const release = this.retain(session);
    let closed = false;
    const guard = (operation: string) => {
      if (closed) throw this.closedError(operation, file);
    };
    const wrap = (operation: string) => (error: unknown) => {
      throw this.fail(error, operation, file);
    };
    return {
      get size() {
        return size;
      },
      read: async (offset: number, length: number): Promise<Buffer> => {
        guard("read");
        checkReadWindow(offset, length, size, where);
        await writer.drain().catch(wrap("write"));
        return this.readExactly(session, handle, offset, length).catch((error: unknown) => {
          throw this.readFailure(error, file, offset + length);
        });
      },
      write: async (offset: number, data: Uint8Array): Promise<void> => {
        guard("write");
        if (!Number.isSafeInteger(offset) || offset < 0) {
          throw new RemoteError({
            ...where,
            code: "INVALID_ARGUMENT",
            operation: "write",
            detail: `offset must be a non-negative integer, got ${String(offset)}`,
          });
        }
        if (data.length === 0) return;
        const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        size = Math.max(size, offset + buffer.length);
        await writer.write(offset, buffer).catch(wrap("write"));
      },
      truncate: async (newSize: number): Promise<void> => {
        guard("truncate");
        if (!Number.isSafeInteger(newSize) || newSize < 0) {
          throw new RemoteError({
            ...where,
            code: "INVALID_ARGUMENT",
            operation: "truncate",
            detail: `size must be a non-negative integer, got ${String(newSize)}`,
          });
        }
        // Commit first: a resend after a server restart must never bring back bytes the truncate removed.
        await writer.commit().catch(wrap("write"));
        await session.nfs.setattr(handle, { size: newSize }).catch(wrap("truncate"));
        size = newSize;
      },
      sync: async (): Promise<void> => {
        guard("sync");
        await writer.commit().catch(wrap("sync"));
      },
      close: async (): Promise<void> => {
        if (closed) return;
        closed = true;
        await writer.settle();
        release();
      },
    };
  }

  isTemporaryName(nameOrPath: string): boolean {
    return isTemporaryName(nameOrPath);
  }
}
