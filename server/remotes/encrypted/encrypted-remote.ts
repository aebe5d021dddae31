/**
 * A remote whose files are encrypted at rest: a decorator over any {@link Remote} (LOCAL, SMB, NFS, S3) that offers the
 * same interface with plaintext paths, sizes, ranges and offsets, so that the repository and the engine read and write an
 * encrypted remote exactly as a plain one. The format is in ./format.ts and server/repository/FORMAT.md, "Encryption".
 *
 * Names are not encrypted (the repository's layout is in the clear: VM uuids, timestamps); contents are, every file.
 * Memory stays flat: streams go chunk by chunk (64 KiB), random access reads only the chunks it needs.
 */
import { Readable } from "node:stream";
import { checkByteRange, checkReadWindow, closedHandleError } from "../remote-arguments.js";
import { RemoteError } from "../remote-error.js";
import { type ComposableRemote, type ComposeOptions, type ComposePart, type ComposeResult, canCompose } from "../s3-compose.js";
import type { ByteRange, FileStat, RandomAccessFile, Remote, RemoteKind, SpaceInfo, UpdatableFile, WriteStreamOptions } from "../remote.js";
import {
  CHUNK_OVERHEAD,
  CHUNK_SIZE,
  type EncryptionSecret,
  type FileHeader,
  HEADER_SIZE,
  KEY_CHECK_FILE,
  SLOT_SIZE,
  chunkCount,
  chunkLength,
  deriveMasterKey,
  fileKey,
  keyMatches,
  newHeader,
  newKeyCheck,
  openChunk,
  parseEncryptionSecret,
  parseHeader,
  parseKeyCheck,
  plainSizeOf,
  sealChunk,
  sealWhole,
  slotOffset,
  storedSize,
} from "./format.js";

/** Decrypted chunks a random-access handle keeps (VHD readers come back to the same header and table chunks). */
const CACHED_CHUNKS = 8;

/**
 * The redo journal of a file changed in place, beside it: `<path>.cairn-journal` (hidden from listings). A chunk rewritten
 * in place and torn by a crash would not authenticate, and would take with it the bytes of the chunk the write did not
 * touch, where a plain file keeps them. So every chunk a write seals goes to the journal first, durably, then in place;
 * `sync()` empties the journal once the file itself is durable. Whoever opens the file next (to read or to update)
 * finds a journal that is not empty and writes its chunks in place again before anything else: the file is then as
 * the last journaled write left it. A record torn by the crash is the one whose write in place had not begun: ignored.
 */
export const JOURNAL_SUFFIX = ".cairn-journal";
const JOURNAL_MAGIC = 0x434a5231; // "CJR1"
/**
 * magic (u32) | chunk index (u64) | flags (u8: 1 the file's last chunk, 2 the last record of its write) | plaintext size of
 * the file after the write (u64) | sealed length (u32). A write's records are applied all or none: a write cut short in
 * the journal never began in place.
 */
const JOURNAL_RECORD_HEADER = 25;

export class EncryptedRemote implements Remote {
  readonly kind: RemoteKind;
  readonly name: string;
  readonly openForUpdate?: (path: string) => Promise<UpdatableFile>;
  readonly composeObject?: ComposableRemote["composeObject"];
  readonly abortComposition?: ComposableRemote["abortComposition"];
  readonly checkImmutability?: () => Promise<void>;
  readonly protect?: (path: string, until: Date) => Promise<void>;
  readonly releaseProtection?: (paths: string[]) => Promise<void>;
  private readonly secret: EncryptionSecret;
  private masterKey: Buffer | undefined;
  private opening: Promise<void> | undefined;

  /**
   * @param inner the storage the encrypted files go to
   * @param secretText the passphrase, or the 32-byte key as 64 hex digits or base64 (never in a message)
   */
  constructor(
    private readonly inner: Remote,
    secretText: string,
  ) {
    this.kind = inner.kind;
    // The storage's own name: its errors (NOT_FOUND, UNREACHABLE...) name it so, and ours say "encrypted" in their detail.
    this.name = inner.name;
    this.secret = parseEncryptionSecret(secretText);
    // Offered exactly where the storage can write at an offset (merges then run in place, as on a plain remote).
    if (typeof inner.openForUpdate === "function") this.openForUpdate = (path) => this.updateFile(path);
    // Where merges compose objects (S3), they compose here too, but every byte is read, re-sealed and sent: a byte range
    // copied by the server would be chunks of another file, sealed under its key and at other indexes.
    if (canCompose(inner)) {
      this.composeObject = (path, parts, options) => this.composeBySending(path, parts, options);
      // The upload is the storage's own multipart upload of writeStream, which aborts itself on any failure in this process.
      this.abortComposition = async () => {};
    }
    // Immutability is the storage's: the encrypted file has the plaintext's path, and is protected as it is stored.
    if (inner.checkImmutability) this.checkImmutability = () => (inner.checkImmutability as () => Promise<void>)();
    if (inner.protect) this.protect = (path, until) => (inner.protect as NonNullable<Remote["protect"]>)(path, until);
    if (inner.releaseProtection)
      this.releaseProtection = (paths) => (inner.releaseProtection as NonNullable<Remote["releaseProtection"]>)(paths);
  }

  get immutabilityDays(): number | undefined {
    return this.inner.immutabilityDays;
  }

  set immutabilityDays(days: number | undefined) {
    this.inner.immutabilityDays = days;
  }

  /** Opens the storage, then checks the key against the key check file (made on first open of an empty remote). */
  open(): Promise<void> {
    this.opening ??= this.openOnce().catch((error: unknown) => {
      this.opening = undefined;
      throw error;
    });
    return this.opening;
  }

  async close(): Promise<void> {
    this.opening = undefined;
    await this.inner.close();
  }

  private async openOnce(): Promise<void> {
    await this.inner.open();
    let stored: Buffer | undefined;
    try {
      stored = await this.inner.readFile(KEY_CHECK_FILE);
    } catch (error) {
      if (!(error instanceof RemoteError && error.code === "NOT_FOUND")) throw error;
    }
    if (stored === undefined) {
      stored = await this.createKeyCheck();
      if (stored === undefined) return;
    }
    const check = parseKeyCheck(stored);
    if (typeof check === "string") {
      throw this.error("INVALID_CONFIG", "open", KEY_CHECK_FILE, `the key check file cannot be read: ${check}`, {
        hint: "restore the key check file from a copy, or check that this remote was made by Cairn",
      });
    }
    const masterKey = await deriveMasterKey(this.secret, check.kdf);
    if (masterKey === undefined || !keyMatches(check, masterKey)) {
      const form =
        masterKey !== undefined
          ? "the key check file does not open with it"
          : check.kdf.name === "none"
            ? "this remote was encrypted with a raw 32-byte key, and a passphrase was given"
            : "this remote was encrypted with a passphrase, and a raw key was given";
      throw this.error("WRONG_KEY", "open", KEY_CHECK_FILE, form);
    }
    this.masterKey = masterKey;
  }

  /** The key check file of a remote that has none: written if the remote is empty, refused otherwise. */
  private async createKeyCheck(): Promise<Buffer | undefined> {
    const present = (await this.inner.list("")).filter((name) => !this.inner.isTemporaryName(name));
    if (present.length > 0) {
      const shown = present.slice(0, 3).join(", ") + (present.length > 3 ? ", ..." : "");
      throw this.error(
        "INVALID_CONFIG",
        "open",
        undefined,
        `it already holds files that are not encrypted (${shown}) and no key check file`,
        {
          field: "encryptionKey",
          hint: "encryption needs an empty folder or bucket: choose another one, or leave encryption off for this remote",
        },
      );
    }
    const { check, masterKey } = await newKeyCheck(this.secret);
    const text = `${JSON.stringify(check, null, 2)}\n`;
    if (await this.inner.writeFileExclusive(KEY_CHECK_FILE, text)) {
      this.masterKey = masterKey;
      return undefined;
    }
    // Another process made it meanwhile: check the key against theirs.
    return this.inner.readFile(KEY_CHECK_FILE);
  }

  private async key(): Promise<Buffer> {
    await this.open();
    return this.masterKey as Buffer;
  }

  private error(
    code: "INTEGRITY" | "WRONG_KEY" | "INVALID_CONFIG" | "IO",
    operation: string,
    path: string | undefined,
    detail: string,
    extra: { hint?: string; cause?: unknown; field?: string } = {},
  ): RemoteError {
    return new RemoteError({ code, remote: this.name, operation, path, detail, ...extra });
  }

  /** The error of data that does not authenticate: never the data itself. */
  integrityError(path: string, detail: string): RemoteError {
    return this.error("INTEGRITY", "read", path, detail);
  }

  private plainSize(path: string, stored: number): number {
    const size = plainSizeOf(stored);
    if (size === undefined) {
      throw this.integrityError(path, `its stored length (${stored} bytes) is not that of an encrypted file: it was cut or extended`);
    }
    return size;
  }

  private headerOf(path: string, bytes: Buffer): FileHeader {
    const header = parseHeader(bytes);
    if (typeof header === "string") throw this.integrityError(path, `its encryption header is not readable: ${header}`);
    return header;
  }

  async createReadStream(path: string, range?: ByteRange): Promise<Readable> {
    const { start, end: askedEnd } = checkByteRange(range, { remote: this.name, path });
    const masterKey = await this.key();
    await this.recover(path);
    const stat = await this.inner.stat(path);
    const size = this.plainSize(path, stat.size);
    const whole = range === undefined || (start === 0 && (askedEnd === undefined || askedEnd >= size - 1));
    const end = Math.min(askedEnd ?? size - 1, size - 1);
    if (!whole && start > end) return Readable.from([]);
    const first = whole ? 0 : Math.floor(start / CHUNK_SIZE);
    const lastChunk = chunkCount(size) - 1;
    const last = whole ? lastChunk : Math.floor(end / CHUNK_SIZE);
    let header: FileHeader | undefined;
    if (!whole) header = this.headerOf(path, await this.readRange(path, 0, HEADER_SIZE - 1));
    // A whole read asks for the whole stored file, which S3 checks against its checksum as well.
    const source = await this.inner.createReadStream(
      path,
      whole ? undefined : { start: slotOffset(first), end: slotOffset(last) + chunkLength(size, last) + CHUNK_OVERHEAD - 1 },
    );
    const remote = this;
    async function* plaintext(): AsyncGenerator<Buffer> {
      const reader = new ExactReader(source);
      try {
        if (header === undefined) header = remote.headerOf(path, await reader.take(HEADER_SIZE, () => remote.cutError(path, 0)));
        const key = fileKey(masterKey, header.fileId);
        for (let index = first; index <= last; index++) {
          const sealed = await reader.take(chunkLength(size, index) + CHUNK_OVERHEAD, () => remote.cutError(path, index));
          const plain = openChunk(key, header, index, index === lastChunk, sealed);
          if (plain === undefined) throw remote.chunkError(path, index, lastChunk);
          const from = index === first && !whole ? start - index * CHUNK_SIZE : 0;
          const to = index === last && !whole ? end - index * CHUNK_SIZE + 1 : plain.length;
          if (to > from) yield plain.subarray(from, to);
        }
        if (whole) await reader.drain();
      } finally {
        source.destroy();
      }
    }
    return Readable.from(plaintext(), { objectMode: false, highWaterMark: CHUNK_SIZE });
  }

  chunkError(path: string, index: number, lastChunk: number): RemoteError {
    return this.integrityError(
      path,
      `encrypted chunk ${index} of ${lastChunk + 1} does not authenticate: the file was changed, damaged, cut or reordered, or written with another key; no byte of it was returned`,
    );
  }

  private cutError(path: string, index: number): RemoteError {
    return this.integrityError(path, `the file ended inside chunk ${index}: it was cut while being read`);
  }

  /** The stored bytes from `start` to `end` (inclusive) of a file, read whole (small ranges only). */
  private async readRange(path: string, start: number, end: number): Promise<Buffer> {
    const stream = await this.inner.createReadStream(path, { start, end });
    const parts: Buffer[] = [];
    for await (const part of stream) parts.push(part as Buffer);
    return Buffer.concat(parts);
  }

  async writeStream(path: string, source: Readable, options: WriteStreamOptions = {}): Promise<{ bytes: number }> {
    const masterKey = await this.key();
    let bytes = 0;
    async function* sealed(): AsyncGenerator<Buffer> {
      const header = newHeader();
      const key = fileKey(masterKey, header.fileId);
      yield header.bytes;
      let index = 0;
      let pending: Buffer[] = [];
      let pendingLength = 0;
      for await (const part of source) {
        const piece = typeof part === "string" ? Buffer.from(part) : (part as Buffer);
        bytes += piece.length;
        pending.push(piece);
        pendingLength += piece.length;
        // A full chunk is sealed once a byte past it has come: only then is it known not to be the last.
        while (pendingLength > CHUNK_SIZE) {
          const joined = pending.length === 1 ? pending[0] : Buffer.concat(pending);
          yield sealChunk(key, header, index++, false, joined.subarray(0, CHUNK_SIZE));
          const rest = joined.subarray(CHUNK_SIZE);
          pending = [rest];
          pendingLength = rest.length;
        }
      }
      yield sealChunk(key, header, index, true, Buffer.concat(pending));
    }
    const sizeHint = options.sizeHint === undefined ? undefined : storedSize(options.sizeHint);
    const input = Readable.from(sealed(), { objectMode: false, highWaterMark: CHUNK_SIZE });
    // A destroyed Readable.from closes only once its generator has returned (Node.js 24 waits for it), and the generator
    // may be parked on the source (an export that has not sent its next bytes): an abort or a failed write would then hang.
    // Stopping the source first lets the generator end at once.
    const destroyInput = input._destroy.bind(input);
    input._destroy = (error, callback) => {
      if (!source.destroyed) source.destroy();
      destroyInput(error, callback);
    };
    try {
      await this.inner.writeStream(path, input, { signal: options.signal, sizeHint });
    } catch (error) {
      // The sealing generator may be waiting on the source: a failed or aborted write stops the source itself.
      if (!source.destroyed) source.destroy();
      throw error;
    }
    return { bytes };
  }

  async writeFile(path: string, data: Uint8Array | string): Promise<void> {
    const masterKey = await this.key();
    await this.inner.writeFile(path, sealWhole(masterKey, typeof data === "string" ? Buffer.from(data, "utf8") : data));
  }

  async writeFileExclusive(path: string, data: Uint8Array | string): Promise<boolean> {
    const masterKey = await this.key();
    return this.inner.writeFileExclusive(path, sealWhole(masterKey, typeof data === "string" ? Buffer.from(data, "utf8") : data));
  }

  async readFile(path: string): Promise<Buffer> {
    const stream = await this.createReadStream(path);
    const parts: Buffer[] = [];
    for await (const part of stream) parts.push(part as Buffer);
    return Buffer.concat(parts);
  }

  async list(dir: string, options?: { recursive?: boolean }): Promise<string[]> {
    await this.open();
    const names = (await this.inner.list(dir, options)).filter((name) => !name.endsWith(JOURNAL_SUFFIX));
    const root = dir === "" || dir === "/";
    return root ? names.filter((name) => name !== KEY_CHECK_FILE) : names;
  }

  async stat(path: string): Promise<FileStat> {
    await this.recover(path);
    const stat = await this.inner.stat(path);
    return { size: this.plainSize(path, stat.size), mtime: stat.mtime };
  }

  async rename(from: string, to: string): Promise<void> {
    await this.recover(from);
    await this.inner.rename(from, to);
  }

  async delete(path: string): Promise<void> {
    await this.open();
    await this.inner.delete(path);
    if (this.openForUpdate !== undefined) await this.inner.delete(`${path}${JOURNAL_SUFFIX}`);
  }

  async deleteTree(dir: string): Promise<void> {
    await this.open();
    await this.inner.deleteTree(dir);
  }

  async mkdir(dir: string): Promise<void> {
    await this.open();
    await this.inner.mkdir(dir);
  }

  spaceInfo(): Promise<SpaceInfo> {
    return this.inner.spaceInfo();
  }

  isTemporaryName(nameOrPath: string): boolean {
    return this.inner.isTemporaryName(nameOrPath);
  }

  /**
   * {@link ComposableRemote.composeObject} on an encrypted remote: the parts' plaintext (copied ranges read and opened
   * here) written as one new encrypted file by {@link writeStream}, atomic as any write. `beforeComplete` runs once the
   * last part is read, before the file is replaced; what it throws leaves the file as it was.
   */
  private async composeBySending(
    path: string,
    parts: Iterable<ComposePart> | AsyncIterable<ComposePart>,
    options: ComposeOptions = {},
  ): Promise<ComposeResult> {
    await this.open();
    options.signal?.throwIfAborted();
    await options.onUploadStarted?.("encrypted-rewrite");
    let count = 0;
    const remote = this;
    async function* plaintext(): AsyncGenerator<Buffer> {
      for await (const part of parts) {
        options.signal?.throwIfAborted();
        count++;
        if (part.kind === "bytes") {
          yield part.data;
          continue;
        }
        const expected = part.kind === "copy" ? part.end - part.start + 1 : part.length;
        const stream =
          part.kind === "copy" ? await remote.createReadStream(part.from, { start: part.start, end: part.end }) : await part.open();
        let length = 0;
        for await (const piece of stream) {
          length += (piece as Buffer).length;
          yield piece as Buffer;
        }
        if (length !== expected) {
          throw new RemoteError({
            code: "INVALID_ARGUMENT",
            remote: remote.name,
            operation: "compose",
            path,
            detail: `part ${count} gave ${length} bytes where ${expected} were announced`,
          });
        }
      }
      await options.beforeComplete?.();
    }
    const { bytes } = await this.writeStream(path, Readable.from(plaintext(), { objectMode: false, highWaterMark: CHUNK_SIZE }), {
      signal: options.signal,
    });
    return { bytes, uploadedBytes: storedSize(bytes), copiedBytes: 0, parts: count };
  }

  private innerUpdate(path: string): Promise<UpdatableFile> {
    return (this.inner.openForUpdate as (path: string) => Promise<UpdatableFile>)(path);
  }

  /**
   * Finishes the writes in place a crash interrupted (see {@link JOURNAL_SUFFIX}): a journal left beside `path` is
   * written into it again, then removed. One `stat` of the journal where files can be changed in place; nothing on S3.
   */
  private async recover(path: string): Promise<void> {
    const masterKey = await this.key();
    if (this.openForUpdate === undefined) return;
    const journalPath = `${path}${JOURNAL_SUFFIX}`;
    let journalSize: number;
    try {
      journalSize = (await this.inner.stat(journalPath)).size;
    } catch (error) {
      if (error instanceof RemoteError && (error.code === "NOT_FOUND" || error.code === "INVALID_PATH")) return;
      throw error;
    }
    if (journalSize > 0) {
      let file: UpdatableFile;
      try {
        file = await this.innerUpdate(path);
      } catch (error) {
        if (!(error instanceof RemoteError && error.code === "NOT_FOUND")) throw error;
        await this.inner.delete(journalPath);
        return;
      }
      const journal = await this.inner.openRandomAccess(journalPath);
      try {
        const header = this.headerOf(path, await file.read(0, HEADER_SIZE));
        const key = fileKey(masterKey, header.fileId);
        let at = 0;
        let finalSize: number | undefined;
        /** The records of the write being read: applied once its last record is there and sound. */
        let pending: Array<{ index: number; at: number; length: number }> = [];
        while (at + JOURNAL_RECORD_HEADER <= journal.size) {
          const head = await journal.read(at, JOURNAL_RECORD_HEADER);
          const index = Number(head.readBigUInt64BE(4));
          const last = (head[12] & 1) === 1;
          const endOfWrite = (head[12] & 2) === 2;
          const plainSize = Number(head.readBigUInt64BE(13));
          const length = head.readUInt32BE(21);
          const fits =
            head.readUInt32BE(0) === JOURNAL_MAGIC &&
            (head[12] & ~3) === 0 &&
            Number.isSafeInteger(plainSize) &&
            index < chunkCount(plainSize) &&
            last === (index === chunkCount(plainSize) - 1) &&
            length === chunkLength(plainSize, index) + CHUNK_OVERHEAD &&
            at + JOURNAL_RECORD_HEADER + length <= journal.size;
          if (!fits) break;
          const sealed = await journal.read(at + JOURNAL_RECORD_HEADER, length);
          // A record torn by the crash: its write in place never began, and nothing after it was journaled.
          if (openChunk(key, header, index, last, sealed) === undefined) break;
          pending.push({ index, at: at + JOURNAL_RECORD_HEADER, length });
          at += JOURNAL_RECORD_HEADER + length;
          if (!endOfWrite) continue;
          for (const record of pending) await file.write(slotOffset(record.index), await journal.read(record.at, record.length));
          finalSize = plainSize;
          pending = [];
        }
        if (finalSize !== undefined) {
          await file.truncate(storedSize(finalSize));
          await file.sync();
        }
      } finally {
        await journal.close();
        await file.close();
      }
    }
    await this.inner.delete(journalPath);
  }

  async openRandomAccess(path: string): Promise<RandomAccessFile> {
    const masterKey = await this.key();
    await this.recover(path);
    const file = await this.inner.openRandomAccess(path);
    try {
      const size = this.plainSize(path, file.size);
      const reader = new ChunkReader(this, path, masterKey, file, size);
      await reader.init();
      return reader;
    } catch (error) {
      await file.close();
      throw error;
    }
  }

  private async updateFile(path: string): Promise<UpdatableFile> {
    const masterKey = await this.key();
    await this.recover(path);
    const file = await this.innerUpdate(path);
    try {
      const size = this.plainSize(path, file.size);
      const updater = new ChunkUpdater(this, path, masterKey, file, size, new Journal(this.inner, `${path}${JOURNAL_SUFFIX}`));
      await updater.init();
      return updater;
    } catch (error) {
      await file.close();
      throw error;
    }
  }
}

/** Opens a journal for appends, creating it empty when missing. */
class Journal {
  private file: UpdatableFile | undefined;

  constructor(
    private readonly inner: Remote,
    readonly path: string,
  ) {}

  private async handle(): Promise<UpdatableFile> {
    if (this.file === undefined) {
      await this.inner.writeFile(this.path, new Uint8Array(0));
      this.file = await (this.inner.openForUpdate as (path: string) => Promise<UpdatableFile>)(this.path);
    }
    return this.file;
  }

  /** Appends the records of one write and makes them durable: only then may the write in place begin. */
  async append(records: Buffer[]): Promise<void> {
    const file = await this.handle();
    await file.write(file.size, Buffer.concat(records));
    await file.sync();
  }

  /** Empties the journal, once the file's writes are durable. */
  async clear(): Promise<void> {
    if (this.file === undefined || this.file.size === 0) return;
    await this.file.truncate(0);
    await this.file.sync();
  }

  /** Closes it, and removes it when it is empty (a close without sync keeps its records for the next open). */
  async close(): Promise<void> {
    if (this.file === undefined) return;
    const empty = this.file.size === 0;
    await this.file.close();
    this.file = undefined;
    if (empty) await this.inner.delete(this.path);
  }
}

/** A journal record: chunk `index` as sealed by a write after which the file held `plainSize` bytes. */
export function journalRecord(index: number, last: boolean, endOfWrite: boolean, plainSize: number, sealed: Buffer): Buffer {
  const head = Buffer.alloc(JOURNAL_RECORD_HEADER);
  head.writeUInt32BE(JOURNAL_MAGIC, 0);
  head.writeBigUInt64BE(BigInt(index), 4);
  head[12] = (last ? 1 : 0) | (endOfWrite ? 2 : 0);
  head.writeBigUInt64BE(BigInt(plainSize), 13);
  head.writeUInt32BE(sealed.length, 21);
  return Buffer.concat([head, sealed]);
}

/** Reads exactly n bytes at a time from a stream (the chunks of an encrypted file), holding at most one chunk. */
class ExactReader {
  private readonly iterator: AsyncIterator<Buffer>;
  private buffered: Buffer[] = [];
  private bufferedLength = 0;

  constructor(source: Readable) {
    this.iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  async take(length: number, whenShort: () => Error): Promise<Buffer> {
    while (this.bufferedLength < length) {
      const next = await this.iterator.next();
      if (next.done) throw whenShort();
      this.buffered.push(next.value);
      this.bufferedLength += next.value.length;
    }
    const joined = this.buffered.length === 1 ? this.buffered[0] : Buffer.concat(this.buffered);
    const rest = joined.subarray(length);
    this.buffered = rest.length > 0 ? [rest] : [];
    this.bufferedLength = rest.length;
    return joined.subarray(0, length);
  }

  /** Reads to the end (bytes past the last chunk are the storage's business; S3 checks its checksum there). */
  async drain(): Promise<void> {
    while (!(await this.iterator.next()).done) {}
  }
}

/** The chunk reads random access and in-place updates share: a handle on the stored file, its header, a small cache. */
class ChunkReader implements RandomAccessFile {
  protected header!: FileHeader;
  protected key!: Buffer;
  protected closed = false;
  private readonly cache = new Map<number, Buffer>();

  constructor(
    protected readonly remote: EncryptedRemote,
    protected readonly path: string,
    private readonly masterKey: Buffer,
    protected readonly file: RandomAccessFile | UpdatableFile,
    protected plainSize: number,
  ) {}

  get size(): number {
    return this.plainSize;
  }

  /** Reads the header, and checks the last chunk: a file cut at a chunk boundary fails here rather than reading short. */
  async init(): Promise<void> {
    this.header = this.headerOf(await this.file.read(0, HEADER_SIZE));
    this.key = fileKey(this.masterKey, this.header.fileId);
    await this.chunks(chunkCount(this.plainSize) - 1, chunkCount(this.plainSize) - 1);
  }

  private headerOf(bytes: Buffer): FileHeader {
    const header = parseHeader(bytes);
    if (typeof header === "string") throw this.remote.integrityError(this.path, `its encryption header is not readable: ${header}`);
    return header;
  }

  protected where() {
    return { remote: this.remote.name, path: this.path };
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (this.closed) throw closedHandleError(this.where());
    checkReadWindow(offset, length, this.plainSize, this.where());
    if (length === 0) return Buffer.alloc(0);
    const first = Math.floor(offset / CHUNK_SIZE);
    const last = Math.floor((offset + length - 1) / CHUNK_SIZE);
    const chunks = await this.chunks(first, last);
    const joined = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const from = offset - first * CHUNK_SIZE;
    return Buffer.from(joined.subarray(from, from + length));
  }

  /** The plaintext of chunks `first` to `last` of the file as it is now, each authenticated. */
  protected async chunks(first: number, last: number): Promise<Buffer[]> {
    const result: Buffer[] = [];
    let missingFrom = -1;
    const lastChunk = chunkCount(this.plainSize) - 1;
    const flush = async (upTo: number) => {
      if (missingFrom < 0) return;
      const start = slotOffset(missingFrom);
      const end = slotOffset(upTo) + chunkLength(this.plainSize, upTo) + CHUNK_OVERHEAD;
      const stored = await this.file.read(start, end - start);
      for (let index = missingFrom; index <= upTo; index++) {
        const at = (index - missingFrom) * SLOT_SIZE;
        const sealed = stored.subarray(at, at + chunkLength(this.plainSize, index) + CHUNK_OVERHEAD);
        const plain = openChunk(this.key, this.header, index, index === lastChunk, sealed);
        if (plain === undefined) throw this.remote.chunkError(this.path, index, lastChunk);
        this.remember(index, plain);
        result.push(plain);
      }
      missingFrom = -1;
    };
    for (let index = first; index <= last; index++) {
      const cached = this.cache.get(index);
      if (cached === undefined) {
        if (missingFrom < 0) missingFrom = index;
        continue;
      }
      await flush(index - 1);
      result.push(cached);
    }
    await flush(last);
    return result;
  }

  protected remember(index: number, plain: Buffer): void {
    this.cache.delete(index);
    this.cache.set(index, plain);
    if (this.cache.size > CACHED_CHUNKS) this.cache.delete(this.cache.keys().next().value as number);
  }

  protected forget(): void {
    this.cache.clear();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cache.clear();
    await this.file.close();
  }
}

/**
 * An encrypted file changed in place (VHD merges). A write re-seals every chunk it touches with a fresh random nonce;
 * a chunk it covers only in part is read, authenticated and patched first. Growing the file re-seals the former last
 * chunk (its last flag changes) and seals zeros over any gap; shrinking re-seals the new last chunk, then cuts.
 */
class ChunkUpdater extends ChunkReader implements UpdatableFile {
  constructor(
    remote: EncryptedRemote,
    path: string,
    masterKey: Buffer,
    file: UpdatableFile,
    plainSize: number,
    private readonly journal: Journal,
  ) {
    super(remote, path, masterKey, file, plainSize);
  }

  private get updatable(): UpdatableFile {
    return this.file as UpdatableFile;
  }

  /** Seals `chunks` (index, plaintext) for a file of `newSize` bytes, journals them, then writes them in place. */
  private async put(first: number, plains: Buffer[], newSize: number): Promise<void> {
    const newLast = chunkCount(newSize) - 1;
    const sealed = plains.map((plain, i) => sealChunk(this.key, this.header, first + i, first + i === newLast, plain));
    await this.journal.append(
      sealed.map((chunk, i) => journalRecord(first + i, first + i === newLast, i === sealed.length - 1, newSize, chunk)),
    );
    this.forget();
    await this.updatable.write(slotOffset(first), sealed.length === 1 ? sealed[0] : Buffer.concat(sealed));
  }

  override async read(offset: number, length: number): Promise<Buffer> {
    if (this.closed) throw closedHandleError(this.where());
    return super.read(offset, length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.closed) throw closedHandleError(this.where());
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RemoteError({
        code: "INVALID_ARGUMENT",
        ...this.where(),
        operation: "write",
        detail: `offset must be a non-negative integer, got ${offset}`,
      });
    }
    if (data.length === 0) return;
    const oldSize = this.plainSize;
    const newSize = Math.max(oldSize, offset + data.length);
    const oldLast = chunkCount(oldSize) - 1;
    const writeFirst = Math.floor(offset / CHUNK_SIZE);
    const first = newSize > oldSize ? Math.min(writeFirst, oldLast) : writeFirst;
    const last = Math.floor((offset + data.length - 1) / CHUNK_SIZE);
    const plains: Buffer[] = [];
    for (let index = first; index <= last; index++) {
      const chunkStart = index * CHUNK_SIZE;
      const length = chunkLength(newSize, index);
      const plain = Buffer.alloc(length);
      const covered = offset <= chunkStart && offset + data.length >= chunkStart + length;
      if (!covered && index <= oldLast && oldSize > 0) {
        const [old] = await this.chunks(index, index);
        old.copy(plain, 0);
      }
      const from = Math.max(offset, chunkStart);
      const to = Math.min(offset + data.length, chunkStart + length);
      if (to > from) plain.set(data.subarray(from - offset, to - offset), from - chunkStart);
      plains.push(plain);
    }
    await this.put(first, plains, newSize);
    this.plainSize = newSize;
  }

  async truncate(size: number): Promise<void> {
    if (this.closed) throw closedHandleError(this.where());
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new RemoteError({
        code: "INVALID_ARGUMENT",
        ...this.where(),
        operation: "truncate",
        detail: `size must be a non-negative integer, got ${size}`,
      });
    }
    if (size === this.plainSize) return;
    if (size > this.plainSize) {
      for (let at = this.plainSize; at < size; at += CHUNK_SIZE * 16) {
        await this.write(at, Buffer.alloc(Math.min(CHUNK_SIZE * 16, size - at)));
      }
      return;
    }
    const newLast = chunkCount(size) - 1;
    const [old] = await this.chunks(newLast, newLast);
    // The new last chunk first (journaled with the new size, which a recovery cuts the file to), then the cut.
    await this.put(newLast, [Buffer.from(old.subarray(0, chunkLength(size, newLast)))], size);
    await this.updatable.truncate(storedSize(size));
    this.plainSize = size;
  }

  async sync(): Promise<void> {
    if (this.closed) throw closedHandleError(this.where());
    await this.updatable.sync();
    await this.journal.clear();
  }

  override async close(): Promise<void> {
    if (this.closed) return;
    try {
      await super.close();
    } finally {
      await this.journal.close();
    }
  }
}
