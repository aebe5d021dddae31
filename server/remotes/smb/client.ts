import { COMMAND, SmbConnection, type SmbConnectionOptions } from "./connection.js";
import { STATUS } from "./status.js";

/**
 * The file operations of SMB2 (MS-SMB2 2.2.13-2.2.40) on one {@link SmbConnection}: CREATE, CLOSE, READ, WRITE, FLUSH,
 * QUERY_DIRECTORY, QUERY_INFO and SET_INFO, and the few compositions the remote needs (stat, mkdir, unlink, rename...).
 * Paths are SMB paths relative to the share: "a\\b", "" for the share's root.
 */

const HEADER = 64;

/** Access mask bits (MS-SMB2 2.2.13.1). */
export const ACCESS = {
  READ_DATA: 0x00000001,
  LIST_DIRECTORY: 0x00000001,
  WRITE_DATA: 0x00000002,
  ADD_FILE: 0x00000002,
  APPEND_DATA: 0x00000004,
  READ_ATTRIBUTES: 0x00000080,
  WRITE_ATTRIBUTES: 0x00000100,
  DELETE: 0x00010000,
  READ_CONTROL: 0x00020000,
  SYNCHRONIZE: 0x00100000,
} as const;

const SHARE_ALL = 0x7; // read, write, delete: others may read, replace or remove a file we have open, as on POSIX

export const DISPOSITION = { OPEN: 1, CREATE: 2, OPEN_IF: 3, OVERWRITE_IF: 5 } as const;

const OPTION_DIRECTORY = 0x00000001;
const OPTION_NON_DIRECTORY = 0x00000040;
const ATTRIBUTE_DIRECTORY = 0x10;
const ATTRIBUTE_NORMAL = 0x80;

/** Information classes (MS-FSCC 2.4, 2.5). */
const FILE_DIRECTORY_INFORMATION = 0x01;
const FILE_RENAME_INFORMATION = 0x0a;
const FILE_DISPOSITION_INFORMATION = 0x0d;
const FILE_END_OF_FILE_INFORMATION = 0x14;
const FILE_FS_FULL_SIZE_INFORMATION = 0x07;
const INFO_FILE = 1;
const INFO_FILESYSTEM = 2;

/** 100 ns intervals between 1601-01-01 and 1970-01-01. */
const FILETIME_EPOCH = 116_444_736_000_000_000n;

function fromFileTime(value: bigint): Date {
  return new Date(Number((value - FILETIME_EPOCH) / 10_000n));
}

/** An open handle, with what the CREATE answer said of the file. */
export interface SmbHandle {
  fileId: Buffer;
  size: number;
  mtime: Date;
  isDirectory: boolean;
}

export interface SmbEntry {
  name: string;
  size: number;
  mtime: Date;
  isDirectory: boolean;
}

export interface CreateRequest {
  access: number;
  disposition: number;
  directory?: boolean;
  /** Refuse a folder (STATUS_FILE_IS_A_DIRECTORY) when a file is meant. */
  file?: boolean;
}

export class SmbClient {
  readonly connection: SmbConnection;
  /** Handles open now: a client asked to close waits for them (streams outlive `close()`). */
  private openHandles = 0;
  private closing = false;

  private constructor(connection: SmbConnection) {
    this.connection = connection;
  }

  static async connect(options: SmbConnectionOptions): Promise<SmbClient> {
    return new SmbClient(await SmbConnection.open(options));
  }

  /** Bytes per READ request: the server's maximum, capped so that several in flight stay within bounded memory. */
  get readSize(): number {
    return Math.min(this.connection.maxReadSize, 1024 * 1024);
  }

  get writeSize(): number {
    return Math.min(this.connection.maxWriteSize, 1024 * 1024);
  }

  get usable(): boolean {
    return this.connection.usable && !this.closing;
  }

  /** Ends the connection once no handle is open any more (now if none is). */
  release(): void {
    this.closing = true;
    if (this.openHandles === 0) void this.connection.close();
  }

  async create(path: string, request: CreateRequest): Promise<SmbHandle> {
    const name = Buffer.from(path, "utf16le");
    const body = Buffer.alloc(56 + Math.max(name.length, 1));
    body.writeUInt16LE(57, 0);
    body.writeUInt32LE(2, 4); // ImpersonationLevel: Impersonation
    body.writeUInt32LE(request.access, 24);
    body.writeUInt32LE(request.directory === true ? ATTRIBUTE_DIRECTORY : ATTRIBUTE_NORMAL, 28);
    body.writeUInt32LE(SHARE_ALL, 32);
    body.writeUInt32LE(request.disposition, 36);
    const options = request.directory === true ? OPTION_DIRECTORY : request.file === true ? OPTION_NON_DIRECTORY : 0;
    body.writeUInt32LE(options, 40);
    body.writeUInt16LE(HEADER + 56, 44);
    body.writeUInt16LE(name.length, 46);
    name.copy(body, 56);
    const { message } = await this.connection.request(COMMAND.CREATE, body);
    this.openHandles++;
    const at = HEADER;
    return {
      fileId: Buffer.from(message.subarray(at + 64, at + 80)),
      mtime: fromFileTime(message.readBigUInt64LE(at + 24)),
      size: Number(message.readBigUInt64LE(at + 48)),
      isDirectory: (message.readUInt32LE(at + 56) & ATTRIBUTE_DIRECTORY) !== 0,
    };
  }

  async close(handle: SmbHandle): Promise<void> {
    const body = Buffer.alloc(24);
    body.writeUInt16LE(24, 0);
    handle.fileId.copy(body, 8);
    try {
      await this.connection.request(COMMAND.CLOSE, body);
    } finally {
      this.openHandles--;
      if (this.closing && this.openHandles === 0) void this.connection.close();
    }
  }

  /** Up to `length` bytes at `offset` (fewer at the end of the file, none past it). */
  async read(handle: SmbHandle, offset: number, length: number): Promise<Buffer> {
    const body = Buffer.alloc(49);
    body.writeUInt16LE(49, 0);
    body.writeUInt8(HEADER + 16, 2); // where we would like the data: right after the response's fixed part
    body.writeUInt32LE(length, 4);
    body.writeBigUInt64LE(BigInt(offset), 8);
    handle.fileId.copy(body, 16);
    const { status, message } = await this.connection.request(COMMAND.READ, body, { payload: length, accept: [STATUS.END_OF_FILE] });
    if (status === STATUS.END_OF_FILE) return Buffer.alloc(0);
    const dataOffset = message.readUInt8(HEADER + 2);
    const dataLength = message.readUInt32LE(HEADER + 4);
    return message.subarray(dataOffset, dataOffset + dataLength);
  }

  /** Writes all of `data` at `offset` in one request (at most {@link writeSize} bytes). */
  async write(handle: SmbHandle, offset: number, data: Buffer): Promise<void> {
    const body = Buffer.alloc(48);
    body.writeUInt16LE(49, 0);
    body.writeUInt16LE(HEADER + 48, 2);
    body.writeUInt32LE(data.length, 4);
    body.writeBigUInt64LE(BigInt(offset), 8);
    handle.fileId.copy(body, 16);
    const { message } = await this.connection.request(COMMAND.WRITE, body, { payload: data.length, data });
    const count = message.readUInt32LE(HEADER + 4);
    if (count !== data.length) throw new Error(`the SMB server wrote ${count} of ${data.length} bytes`);
  }

  /** Asks the server to put what was written (or a folder's entries) on stable storage before answering. */
  async flush(handle: SmbHandle): Promise<void> {
    const body = Buffer.alloc(24);
    body.writeUInt16LE(24, 0);
    handle.fileId.copy(body, 8);
    await this.connection.request(COMMAND.FLUSH, body);
  }

  private async setInfo(handle: SmbHandle, infoClass: number, buffer: Buffer): Promise<void> {
    const body = Buffer.alloc(32 + buffer.length);
    body.writeUInt16LE(33, 0);
    body.writeUInt8(INFO_FILE, 2);
    body.writeUInt8(infoClass, 3);
    body.writeUInt32LE(buffer.length, 4);
    body.writeUInt16LE(HEADER + 32, 8);
    handle.fileId.copy(body, 16);
    buffer.copy(body, 32);
    await this.connection.request(COMMAND.SET_INFO, body);
  }

  private async queryInfo(handle: SmbHandle, infoType: number, infoClass: number, outputLength: number): Promise<Buffer> {
    const body = Buffer.alloc(41);
    body.writeUInt16LE(41, 0);
    body.writeUInt8(infoType, 2);
    body.writeUInt8(infoClass, 3);
    body.writeUInt32LE(outputLength, 4);
    handle.fileId.copy(body, 24);
    const { message } = await this.connection.request(COMMAND.QUERY_INFO, body, { payload: outputLength });
    const offset = message.readUInt16LE(HEADER + 2);
    return message.subarray(offset, offset + message.readUInt32LE(HEADER + 4));
  }

  /** Sets the file's size: cuts it, or extends it with zeros (FileEndOfFileInformation). */
  async setEndOfFile(handle: SmbHandle, size: number): Promise<void> {
    const buffer = Buffer.alloc(8);
    buffer.writeBigUInt64LE(BigInt(size));
    await this.setInfo(handle, FILE_END_OF_FILE_INFORMATION, buffer);
  }

  /** Marks an open file or empty folder for deletion when its last handle closes. */
  async setDeleteOnClose(handle: SmbHandle): Promise<void> {
    await this.setInfo(handle, FILE_DISPOSITION_INFORMATION, Buffer.from([1]));
  }

  /** Renames the open file to `target` (a path from the share's root), replacing what is there. */
  async renameTo(handle: SmbHandle, target: string): Promise<void> {
    const name = Buffer.from(target, "utf16le");
    const buffer = Buffer.alloc(20 + name.length);
    buffer.writeUInt8(1, 0); // ReplaceIfExists
    buffer.writeUInt32LE(name.length, 16);
    name.copy(buffer, 20);
    await this.setInfo(handle, FILE_RENAME_INFORMATION, buffer);
  }

  /** Free and total bytes of the share's file system, as the user sees them (FileFsFullSizeInformation). */
  async fsSize(handle: SmbHandle): Promise<{ totalBytes: number; freeBytes: number }> {
    const info = await this.queryInfo(handle, INFO_FILESYSTEM, FILE_FS_FULL_SIZE_INFORMATION, 32);
    const unit = info.readUInt32LE(24) * info.readUInt32LE(28);
    return {
      totalBytes: Number(info.readBigUInt64LE(0)) * unit,
      freeBytes: Number(info.readBigUInt64LE(8)) * unit, // CallerAvailableAllocationUnits: quotas included
    };
  }

  /** Every entry of an open folder but "." and "..", in the server's order. */
  async listOpen(handle: SmbHandle): Promise<SmbEntry[]> {
    const entries: SmbEntry[] = [];
    const pattern = Buffer.from("*", "utf16le");
    const outputLength = Math.min(this.connection.maxTransactSize, 64 * 1024);
    for (let first = true; ; first = false) {
      const body = Buffer.alloc(32 + pattern.length);
      body.writeUInt16LE(33, 0);
      body.writeUInt8(FILE_DIRECTORY_INFORMATION, 2);
      body.writeUInt8(first ? 0x01 : 0, 3); // RESTART_SCANS on the first
      handle.fileId.copy(body, 8);
      body.writeUInt16LE(HEADER + 32, 24);
      body.writeUInt16LE(pattern.length, 26);
      body.writeUInt32LE(outputLength, 28);
      pattern.copy(body, 32);
      const { status, message } = await this.connection.request(COMMAND.QUERY_DIRECTORY, body, {
        payload: outputLength,
        accept: [STATUS.NO_MORE_FILES],
      });
      if (status === STATUS.NO_MORE_FILES) return entries;
      const offset = message.readUInt16LE(HEADER + 2);
      const buffer = message.subarray(offset, offset + message.readUInt32LE(HEADER + 4));
      for (let at = 0; at < buffer.length; ) {
        const next = buffer.readUInt32LE(at);
        const nameLength = buffer.readUInt32LE(at + 60);
        const name = buffer.subarray(at + 64, at + 64 + nameLength).toString("utf16le");
        if (name !== "." && name !== "..") {
          entries.push({
            name,
            mtime: fromFileTime(buffer.readBigUInt64LE(at + 24)),
            size: Number(buffer.readBigUInt64LE(at + 40)),
            isDirectory: (buffer.readUInt32LE(at + 56) & ATTRIBUTE_DIRECTORY) !== 0,
          });
        }
        if (next === 0) break;
        at += next;
      }
    }
  }

  // ---- compositions ----

  /** Runs `use` on a handle and closes it after, keeping `use`'s error over the close's. */
  async withHandle<T>(path: string, request: CreateRequest, use: (handle: SmbHandle) => Promise<T>): Promise<T> {
    const handle = await this.create(path, request);
    let result: T;
    try {
      result = await use(handle);
    } catch (error) {
      await this.close(handle).catch(() => undefined);
      throw error;
    }
    await this.close(handle);
    return result;
  }

  /** What a CREATE of the path says about it (size, time, folder or not), without reading it. */
  stat(path: string): Promise<SmbHandle> {
    return this.withHandle(path, { access: ACCESS.READ_ATTRIBUTES, disposition: DISPOSITION.OPEN }, async (handle) => handle);
  }

  readdir(path: string): Promise<SmbEntry[]> {
    return this.withHandle(
      path,
      { access: ACCESS.LIST_DIRECTORY | ACCESS.READ_ATTRIBUTES | ACCESS.SYNCHRONIZE, disposition: DISPOSITION.OPEN, directory: true },
      (handle) => this.listOpen(handle),
    );
  }

  /** Creates a folder; STATUS_OBJECT_NAME_COLLISION when the name is taken. */
  async mkdir(path: string): Promise<void> {
    await this.withHandle(
      path,
      { access: ACCESS.READ_ATTRIBUTES, disposition: DISPOSITION.CREATE, directory: true },
      async () => undefined,
    );
  }

  /** Deletes a file (not a folder). */
  async unlink(path: string): Promise<void> {
    await this.withHandle(path, { access: ACCESS.DELETE, disposition: DISPOSITION.OPEN, file: true }, (handle) =>
      this.setDeleteOnClose(handle),
    );
  }

  /** Deletes an empty folder. */
  async rmdir(path: string): Promise<void> {
    await this.withHandle(path, { access: ACCESS.DELETE, disposition: DISPOSITION.OPEN, directory: true }, (handle) =>
      this.setDeleteOnClose(handle),
    );
  }

  async rename(from: string, to: string): Promise<void> {
    await this.withHandle(from, { access: ACCESS.DELETE | ACCESS.READ_ATTRIBUTES, disposition: DISPOSITION.OPEN }, (handle) =>
      this.renameTo(handle, to),
    );
  }

  /** Flushes a folder's entries; Samba asks for add-file access on the folder to allow it (it then fsyncs the folder). */
  async flushFolder(path: string): Promise<void> {
    await this.withHandle(
      path,
      { access: ACCESS.ADD_FILE | ACCESS.READ_ATTRIBUTES, disposition: DISPOSITION.OPEN, directory: true },
      (handle) => this.flush(handle),
    );
  }

  async spaceOf(path: string): Promise<{ totalBytes: number; freeBytes: number }> {
    return this.withHandle(path, { access: ACCESS.READ_ATTRIBUTES, disposition: DISPOSITION.OPEN, directory: true }, (handle) =>
      this.fsSize(handle),
    );
  }
}
