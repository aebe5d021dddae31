import type { Readable } from "node:stream";

/**
 * The storage interface every kind of remote implements: a narrow file store with atomic writes.
 * It knows nothing of backups; the layout on top of it lives in `server/repository/`.
 *
 * Common rules (see README.md in this folder):
 * - Every path is a relative POSIX path inside the remote (`remote-path.ts`); a bad one is refused with
 *   a `RemoteError` INVALID_PATH before any I/O.
 * - Every failure is a `RemoteError` with a `code` and `transient`, except where a member says it
 *   passes the caller's own error through (a failing source stream, an abort).
 * - Operations open the remote on first use; {@link Remote.open} exists to surface a bad configuration
 *   or an unreachable server early. After {@link Remote.close}, a new call opens it again.
 * - Folders are implicit on object stores: writing a file creates its folders, and a folder with no
 *   file in it may not be listed.
 */
export interface Remote {
  /** The kind, as in the remote's configuration. */
  readonly kind: RemoteKind;

  /** A human name for messages and logs, e.g. `local remote "/srv/backups"`. Never holds a secret. */
  readonly name: string;

  /**
   * Connects and checks that the remote is usable (the folder exists and is writable, the bucket
   * exists and the credentials are accepted). Idempotent; concurrent calls share one attempt.
   * Fails with NOT_FOUND, PERMISSION_DENIED, UNREACHABLE or INVALID_CONFIG.
   */
  open(): Promise<void>;

  /** Releases connections. Idempotent; never fails. Streams still open keep working until they end. */
  close(): Promise<void>;

  /**
   * A stream of the file's bytes from `start` to `end`, both inclusive and zero-based (as in
   * `fs.createReadStream` and HTTP ranges). `end` past the end of the file is clamped; `start` past it
   * gives an empty stream. The promise rejects with NOT_FOUND before any byte is sent when the file is
   * missing; a failure mid-stream destroys the stream with a `RemoteError`.
   *
   * On S3 a whole read (no range) is checked against the object's checksum where one is known, and
   * fails at its end with IO rather than ending when the bytes do not match; a ranged read is not
   * checked (see README.md).
   */
  createReadStream(path: string, range?: ByteRange): Promise<Readable>;

  /**
   * Writes `source` to `path` atomically, with backpressure (memory stays bounded whatever the size).
   * The bytes go to a temporary name (or, on S3, an incomplete multipart upload) and appear under
   * `path` only when all of them are stored; an existing file at `path` is replaced at that moment.
   * On any failure or abort nothing appears under `path`, the temporary data is removed, and the
   * promise rejects: with the source's own error if the source failed, with an `AbortError` if
   * `signal` fired, with a `RemoteError` otherwise. Parent folders are created as needed.
   *
   * When the promise resolves, the file is durable (it survives a crash of the storage): LOCAL fsyncs
   * the file and then its folder, SMB asks the server to flush both, S3 answers only once stored.
   * The bytes are checked on the way where the kind can: S3 sends a Content-MD5 with every request
   * carrying data, and the server refuses bytes that do not match it (see README.md).
   */
  writeStream(path: string, source: Readable, options?: WriteStreamOptions): Promise<{ bytes: number }>;

  /** Writes a small file atomically (same guarantees as {@link Remote.writeStream}). */
  writeFile(path: string, data: Uint8Array | string): Promise<void>;

  /**
   * Creates a small file only if nothing exists under `path` yet: `true` if this call created it,
   * `false` (not an error) if a file or folder was already there, which is then left untouched.
   * Parent folders are created as needed; a failure is a `RemoteError` and leaves no file behind
   * (short of a connection lost mid-way on SMB).
   *
   * Which kinds guarantee that of concurrent callers (any process, any machine) exactly one gets `true`:
   * - LOCAL: yes. The content is written and fsynced under a temporary name, then published with
   *   link(2), which fails if the name exists; readers never see a partial file. On a file system
   *   without hard links, open(2) with O_EXCL instead (a reader may then briefly see it partial).
   * - SMB: yes. CREATE with FILE_CREATE on the final name (the server's O_EXCL); a reader may see the
   *   file empty until its content is written and flushed, a few milliseconds later.
   * - S3: only where the server honours `If-None-Match: *` on PutObject (AWS since August 2024,
   *   recent MinIO). Where it does not (s3rver, older servers), a HEAD before the PUT still gives
   *   `false` for a file that already exists, but two concurrent callers can both get `true` (the
   *   last write wins). Do not build mutual exclusion on it there.
   */
  writeFileExclusive(path: string, data: Uint8Array | string): Promise<boolean>;

  /** The whole content of a small file (metadata, not disks). NOT_FOUND when missing. */
  readFile(path: string): Promise<Buffer>;

  /**
   * The names in folder `dir` ("" for the root), sorted. Not recursive: files and sub-folders by name.
   * Recursive: every file under `dir`, as a path relative to `dir` (folders themselves are not
   * listed, since object stores have none). A missing folder gives `[]`. Temporary names are included
   * (a cleaner needs them); filter them with {@link Remote.isTemporaryName}.
   */
  list(dir: string, options?: { recursive?: boolean }): Promise<string[]>;

  /** The size and modification time of a file. NOT_FOUND when missing or when `path` is a folder. */
  stat(path: string): Promise<FileStat>;

  /**
   * Moves a file, replacing any file at `to`, creating the folders of `to`. NOT_FOUND when `from` is
   * missing. Atomic on file systems; on S3 it is a server-side copy then a delete, so prefer writing
   * under the final name there (writes are already atomic).
   */
  rename(from: string, to: string): Promise<void>;

  /** Deletes a file, durably on LOCAL and SMB. Deleting a missing file succeeds (so cleaners can be re-run). */
  delete(path: string): Promise<void>;

  /** Deletes a folder and everything under it. A missing folder succeeds; the root is refused. */
  deleteTree(dir: string): Promise<void>;

  /** Creates a folder and its parents; succeeds if it exists. A no-op where folders are implicit. */
  mkdir(dir: string): Promise<void>;

  /** Space figures; a figure the storage cannot tell (S3) is absent rather than guessed. */
  spaceInfo(): Promise<SpaceInfo>;

  /**
   * A handle to read a file at any offset without streaming it (the VHD chain view reads backups
   * in place through it). The size is fixed at open time. NOT_FOUND when missing.
   */
  openRandomAccess(path: string): Promise<RandomAccessFile>;

  /** Whether the last segment of a name or path is a leftover temporary name of an interrupted write. */
  isTemporaryName(nameOrPath: string): boolean;

  /**
   * Opens an existing file to change it in place (VHD merges write a child's blocks into its parent). Offered by the
   * kinds whose storage can write at an offset (LOCAL, SMB, NFS); absent where files cannot be changed, only replaced
   * (S3). NOT_FOUND when missing; a folder is NOT_FOUND too.
   */
  openForUpdate?(path: string): Promise<UpdatableFile>;

  /**
   * The immutability window in days (0 or absent: off), from the configuration: the repository makes every file of a
   * backup immutable for that long once the backup is complete (server/repository/FORMAT.md, "Immutability").
   */
  immutabilityDays?: number;

  /**
   * Checks that this remote can make files immutable, by protecting and releasing a probe file where the kind allows;
   * fails with INVALID_CONFIG saying why not (not root, a file system without the attribute, a bucket without Object
   * Lock). Offered by the kinds that can (LOCAL, S3); absent elsewhere.
   */
  checkImmutability?(): Promise<void>;

  /**
   * Makes a file immutable until `until`: nobody, Cairn included, can change, rename or delete it before then. LOCAL: the
   * immutable attribute (`chattr +i`; it has no date, so the repository records `until` in the backup's metadata and lifts
   * the attribute itself once it has passed); S3: Object Lock retention in COMPLIANCE mode (the server keeps the date).
   */
  protect?(path: string, until: Date): Promise<void>;

  /**
   * Lifts the protection of files whose window has ended, before they are deleted or merged. LOCAL: `chattr -i`; a kind
   * whose server ends the protection on its own (S3) does not offer it. Missing files are skipped.
   */
  releaseProtection?(paths: string[]): Promise<void>;
}

/** The kinds of remote a configuration may name. */
export type RemoteKind = "LOCAL" | "S3" | "SMB" | "NFS";

/** An inclusive byte range; both ends optional. */
export interface ByteRange {
  /** First byte, zero-based. @default 0 */
  start?: number;
  /** Last byte, inclusive. @default the last byte of the file */
  end?: number;
}

/** Options of {@link Remote.writeStream}. */
export interface WriteStreamOptions {
  /** Aborts the write: the temporary data is removed and the promise rejects with an AbortError. */
  signal?: AbortSignal;
  /**
   * The expected size in bytes, when known. S3 sizes its multipart parts from it (at most 10 000
   * parts per object); other kinds ignore it. It is a hint: the real size may differ.
   */
  sizeHint?: number;
}

/** What {@link Remote.stat} returns. */
export interface FileStat {
  /** Size in bytes. */
  size: number;
  /** Last modification time, as the storage records it. */
  mtime: Date;
}

/** What {@link Remote.spaceInfo} returns; each figure is in bytes, absent when unknown. */
export interface SpaceInfo {
  freeBytes?: number;
  usedBytes?: number;
  totalBytes?: number;
}

/** A file opened for reads at any offset (see {@link Remote.openRandomAccess}). */
export interface RandomAccessFile {
  /** The size of the file when it was opened. */
  readonly size: number;
  /**
   * Exactly `length` bytes starting at `offset`. A range that does not lie within `size` is refused
   * with INVALID_ARGUMENT (no short reads); a file that shrank meanwhile gives IO.
   */
  read(offset: number, length: number): Promise<Buffer>;
  /** Releases the handle. Idempotent. Reads after close fail with INVALID_ARGUMENT. */
  close(): Promise<void>;
}

/**
 * A file opened for reads and writes at any offset (see {@link Remote.openForUpdate}). Writes are not atomic: the caller
 * (the VHD merge) orders them so that every state a crash can leave reads right, and calls {@link UpdatableFile.sync}
 * where that order needs them on stable storage.
 */
export interface UpdatableFile {
  /** The size now: the size at open, changed by writes past the end and by {@link UpdatableFile.truncate}. */
  readonly size: number;
  /** Exactly `length` bytes at `offset`; a range not within `size` is refused with INVALID_ARGUMENT (no short reads). */
  read(offset: number, length: number): Promise<Buffer>;
  /** Writes all of `data` at `offset` (past the end grows the file; a gap reads as zeros). Resolves once all is sent. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Cuts or extends (with zeros) the file to `size` bytes. */
  truncate(size: number): Promise<void>;
  /** Makes every write so far durable: fsync on LOCAL, SMB2 FLUSH on SMB, NFS COMMIT (after UNSTABLE writes) on NFS. */
  sync(): Promise<void>;
  /** Releases the handle (without an implicit sync). Idempotent. Calls after close fail with INVALID_ARGUMENT. */
  close(): Promise<void>;
}
