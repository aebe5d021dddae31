import { createRequire } from "node:module";
import { sendFlush } from "./smb-flush.js";

// The package is CommonJS whose typings declare `export default`, while at run time module.exports is
// the class itself: load it with require and take the class type from the typings.
type Smb2Class = typeof import("@tryjsky/v9u-smb2").default;
const require = createRequire(import.meta.url);
const SMB2 = require("@tryjsky/v9u-smb2") as Smb2Class;

/** The library's request sender and connection wrapper (untyped internals of the pinned 1.1.0). */
type SmbRequest = (message: string, params: unknown, connection: unknown, callback: (error: Error | null, result: unknown) => void) => void;
const sendRequest = (require("@tryjsky/v9u-smb2/lib/tools/smb2-forge.js") as { request: SmbRequest }).request;
const requireConnect = (
  require("@tryjsky/v9u-smb2/lib/tools/smb2-connection.js") as {
    requireConnect: (method: (...args: never[]) => void) => (...args: unknown[]) => void;
  }
).requireConnect;
const statsOf = require("@tryjsky/v9u-smb2/lib/tools/stats.js") as (entry: unknown) => SmbStats;

/**
 * The library's unlink opens with OVERWRITE_IF, which a server refuses (ACCESS_DENIED) for a hidden
 * file, and Samba marks every dot-file hidden: temporary names all start with a dot. This one opens
 * the existing file (FILE_OPEN, sharing delete), marks it delete-on-close and closes it.
 */
const unlinkExisting = requireConnect(function (this: unknown, path: string, callback: Callback<void>): void {
  const connection = this;
  const FILE_OPEN = 1;
  const FILE_SHARE_DELETE = 4;
  sendRequest("create", { path, createDisposition: FILE_OPEN, shareAccess: FILE_SHARE_DELETE }, connection, (openError, file) => {
    if (openError !== null && openError !== undefined) return callback(openError);
    const disposition = {
      FileId: (file as { FileId: Buffer }).FileId,
      FileInfoClass: "FileDispositionInformation",
      Buffer: Buffer.from([1]),
    };
    sendRequest("set_info", disposition, connection, (error) => {
      sendRequest("close", file, connection, (closeError) => callback(error ?? closeError ?? null));
    });
  });
} as (...args: never[]) => void);

/** Writes a file's data to the server's stable storage (SMB2 FLUSH, which the library lacks). */
const flushFile = requireConnect(function (this: unknown, file: SmbFile, callback: Callback<void>): void {
  sendFlush(this, file, (error) => callback(error));
} as (...args: never[]) => void);

/**
 * Flushes a folder's entries, so that names created, renamed or removed in it survive a crash of
 * the server. The folder is opened with add-file access (the library's "open_folder"), which is what
 * Samba asks of a folder it flushes (it then fsyncs the folder).
 */
const flushFolder = requireConnect(function (this: unknown, path: string, callback: Callback<void>): void {
  const connection = this;
  sendRequest("open_folder", { path }, connection, (openError, folder) => {
    if (openError !== null && openError !== undefined) return callback(openError);
    sendFlush(connection, folder as SmbFile, (error) => {
      sendRequest("close", folder, connection, (closeError) => callback(error ?? closeError ?? null));
    });
  });
} as (...args: never[]) => void);

interface DirectoryEntry {
  Filename: string;
}

/**
 * The library's own readdir closes the wrong handle (it passes the listing, not the folder, to CLOSE),
 * so every listed folder stays open on the server and cannot be deleted until the session ends.
 * This one closes the folder it opened, on success and on failure.
 */
const readdirClosing = requireConnect(function (this: unknown, path: string, callback: Callback<SmbStats[]>): void {
  const connection = this;
  sendRequest("open", { path }, connection, (openError, folder) => {
    if (openError !== null && openError !== undefined) return callback(openError);
    const entries: SmbStats[] = [];
    const next = (): void =>
      sendRequest("query_directory", folder, connection, (error, batch) => {
        if (error !== null && error !== undefined) {
          const done = (error as { code?: string }).code === "STATUS_NO_MORE_FILES";
          return sendRequest("close", folder, connection, (closeError) => {
            if (!done) callback(error);
            else if (closeError !== null && closeError !== undefined) callback(closeError);
            else callback(null, entries);
          });
        }
        for (const entry of batch as DirectoryEntry[]) {
          if (entry.Filename !== "." && entry.Filename !== "..") entries.push({ ...statsOf(entry), name: entry.Filename });
        }
        next();
      });
    next();
  });
} as (...args: never[]) => void);

/**
 * A promise face on `@tryjsky/v9u-smb2` (a pure-JS SMB2/3 client, NTLMv2) that never hangs: the
 * library can wait forever for an answer that never comes, so every call has a time limit.
 * Only the calls the SMB remote needs are exposed; paths here are SMB paths ("a\\b", "" = share root).
 *
 * Known limits of the library (see research/test-peers.md): the server must not answer with
 * STATUS_PENDING (Samba: `aio read size = 0`, `aio write size = 0`), and its own streams are broken
 * on Node >= 14, so the remote builds streams from open/read/write/close.
 */

/** An open file of the library (its CREATE response). */
export interface SmbFile {
  FileId: Buffer;
  EndofFile: Buffer;
}

/** What `stat`/`readdir` report per entry. */
export interface SmbStats {
  name?: string;
  size: number;
  mtime: Date;
  isDirectory(): boolean;
}

export interface SmbClientOptions {
  host: string;
  port: number;
  share: string;
  domain: string;
  username: string;
  password: string;
  /** Time allowed for one request, connecting included. */
  timeoutMs: number;
}

/** Thrown when a request gets no answer in time; classified UNREACHABLE (code ETIMEDOUT). */
function timeoutError(timeoutMs: number): Error {
  return Object.assign(new Error(`no answer from the SMB server within ${timeoutMs} ms`), { code: "ETIMEDOUT" });
}

type Callback<T> = (error?: Error | null, value?: T) => void;

export class SmbClient {
  private readonly client: InstanceType<Smb2Class>;
  private readonly timeoutMs: number;

  constructor(options: SmbClientOptions) {
    this.timeoutMs = options.timeoutMs;
    this.client = new SMB2({
      share: `\\\\${options.host}\\${options.share}`,
      port: options.port,
      domain: options.domain,
      username: options.username,
      password: options.password,
      autoCloseTimeout: 0, // the remote decides when to disconnect
    });
  }

  /** Runs one library call with the time limit. */
  private limit<T>(start: (callback: Callback<T>) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(timeoutError(this.timeoutMs)), this.timeoutMs);
      try {
        start((error, value) => {
          clearTimeout(timer);
          if (error !== undefined && error !== null) reject(error);
          else resolve(value as T);
        });
      } catch (error) {
        clearTimeout(timer);
        reject(error);
      }
    });
  }

  private promised<T>(run: () => Promise<T>): Promise<T> {
    return this.limit<T>((callback) => {
      run().then(
        (value) => callback(null, value),
        (error: Error) => callback(error),
      );
    });
  }

  readdir(path: string): Promise<SmbStats[]> {
    return this.limit<SmbStats[]>((callback) => readdirClosing.call(this.client, path, callback));
  }

  stat(path: string): Promise<SmbStats> {
    return this.promised(() => this.client.stat(path) as unknown as Promise<SmbStats>);
  }

  mkdir(path: string): Promise<void> {
    return this.promised(() => this.client.mkdir(path));
  }

  rmdir(path: string): Promise<void> {
    return this.promised(() => this.client.rmdir(path));
  }

  /** Deletes a file; a missing one gives STATUS_OBJECT_NAME_NOT_FOUND (or ..._PATH_NOT_FOUND). */
  unlink(path: string): Promise<void> {
    return this.limit<void>((callback) => unlinkExisting.call(this.client, path, callback));
  }

  rename(from: string, to: string): Promise<void> {
    return this.promised(() => this.client.rename(from, to, { replace: true }));
  }

  /** Opens a file: "r" to read, "wx" to create a new one (fails if it exists). */
  open(path: string, flags: "r" | "wx"): Promise<SmbFile> {
    return this.limit<SmbFile>((callback) => this.client.open(path, flags, callback as unknown as Callback<number>));
  }

  /** Reads up to `length` bytes at `position` (fewer at the end of the file). */
  read(file: SmbFile, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    return this.limit<number>((callback) =>
      this.client.read(file as unknown as number, buffer, offset, length, position, (error?: Error, read?: number) =>
        callback(error, read),
      ),
    );
  }

  /** Writes all of `buffer` at `position`. */
  write(file: SmbFile, buffer: Buffer, position: number): Promise<number> {
    // The library asserts offset > 0 when one is given, so the whole buffer is passed with none.
    return this.limit<number>((callback) =>
      this.client.write(
        file as unknown as number,
        buffer,
        null as unknown as number,
        buffer.length,
        position,
        (error?: Error, written?: number) => callback(error, written),
      ),
    );
  }

  /** Asks the server to put what was written to `file` on stable storage before answering (SMB2 FLUSH). */
  flush(file: SmbFile): Promise<void> {
    return this.limit<void>((callback) => flushFile.call(this.client, file, callback));
  }

  /** Asks the server to put the entries of folder `path` on stable storage (see {@link flushFolder}). */
  flushFolder(path: string): Promise<void> {
    return this.limit<void>((callback) => flushFolder.call(this.client, path, callback));
  }

  close(file: SmbFile): Promise<void> {
    return this.limit<void>((callback) => this.client.close(file as unknown as number, callback));
  }

  disconnect(): void {
    this.client.disconnect();
  }
}

/** The size of an open file. */
export function smbFileSize(file: SmbFile): number {
  return Number(file.EndofFile.readBigUInt64LE(0));
}
