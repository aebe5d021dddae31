import type { Readable } from "node:stream";
import { checksumVhdStream, encodeBlockChecksums } from "../formats/vhd/index.js";
import type { Remote } from "../remotes/remote.js";
import { digestStream } from "./file-digest.js";
import {
  XO_CACHE_NAME,
  blockChecksumsPathOf,
  checkSegment,
  formatBackupTimestamp,
  metadataPath,
  resolveInVmDir,
  vhdRelativePath,
  vmDir,
  xvaRelativePath,
} from "./layout.js";
import { immutableUntilFor } from "./immutability.js";
import { remoteNow } from "./remote-clock.js";
import { type VmLock, type VmLockOptions, acquireVmLock } from "./lock.js";
import {
  type BackupMetadata,
  type BackupMode,
  type CairnFields,
  type FileIntegrity,
  METADATA_FORMAT_VERSION,
  XO_METADATA_VERSION,
  parseBackupMetadata,
  serializeBackupMetadata,
} from "./metadata.js";
import { RepositoryError, RepositoryErrorReason, isNotFound } from "./repository-error.js";
import { messageOf } from "../errors.js";

/** What {@link beginBackup} needs. */
export interface BeginBackupOptions {
  vmUuid: string;
  /** The backup's time (ms or Date): names every file at second precision. */
  timestamp: number | Date;
  mode: BackupMode;
  jobId: string;
  /** Passed to the VM folder lock (clock, holder name). */
  lock?: VmLockOptions;
}

/** Options of a data write. */
export interface WriteDataOptions {
  /** Stops the write: its temporary data is removed and the promise rejects with an AbortError. */
  signal?: AbortSignal;
  /** Expected bytes (S3 sizes its parts from it). */
  sizeHint?: number;
}

/** What the caller gives {@link BackupWriter.commit}: everything but what the writer knows itself. */
export interface CommitInput {
  scheduleId: string;
  vm: BackupMetadata["vm"];
  vmSnapshot: BackupMetadata["vmSnapshot"];
  tags?: string[];
  vbds?: BackupMetadata["vbds"];
  vdis?: BackupMetadata["vdis"];
  vifs?: BackupMetadata["vifs"];
  vtpms?: unknown[];
  /** Delta: VDI ref -> the `path` {@link BackupWriter.writeDisk} returned. Every written disk must appear. */
  vhds?: Record<string, string>;
  isVhdDifferencing?: Record<string, boolean>;
  cairn: Omit<CairnFields, "formatVersion" | "integrity" | "metadataSha256">;
}

/** One written file. */
export interface WrittenFile {
  /** Relative to the VM folder, as metadata names it (`./<date>.xva`, `vdis/<job>/<vdi>/<date>.vhd`). */
  path: string;
  /** The remote path. */
  remotePath: string;
  bytes: number;
  /** How the file can be checked later (recorded in `cairn.integrity`). */
  integrity: FileIntegrity;
}

type WriterState = "open" | "committed" | "aborted";

/**
 * Writes one backup of one VM: data files first (each through {@link Remote.writeStream}: a temporary name, renamed when
 * complete), then the metadata, last and atomically. Nothing is a restore point until its metadata exists. Holds the VM
 * folder's lock from {@link beginBackup} until {@link commit} or {@link abort}.
 */
export class BackupWriter {
  private state: WriterState = "open";
  private readonly written = new Map<string, WrittenFile>();
  /** Every remote path this backup created (data files and their block checksums), for abort. */
  private readonly created = new Set<string>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly stop = new AbortController();
  private failure: unknown;
  readonly timestamp: number;
  readonly metadataPath: string;

  /** @internal use {@link beginBackup} */
  constructor(
    private readonly remote: Remote,
    readonly options: BeginBackupOptions,
    private readonly lock: VmLock,
  ) {
    this.timestamp = new Date(options.timestamp).getTime();
    this.metadataPath = metadataPath(options.vmUuid, this.timestamp);
  }

  /** Full mode: the XVA stream, to `<date>.xva`. */
  writeXva(source: Readable, options: WriteDataOptions = {}): Promise<WrittenFile> {
    if (this.options.mode !== "full") return Promise.reject(this.misuse("writeXva is for full backups; this writer is delta"));
    return this.write(xvaRelativePath(this.timestamp), source, options);
  }

  /** Delta mode: one disk's VHD stream (full or differencing), to `vdis/<job>/<vdi>/<date>.vhd`. */
  writeDisk(vdiUuid: string, source: Readable, options: WriteDataOptions = {}): Promise<WrittenFile> {
    if (this.options.mode !== "delta") return Promise.reject(this.misuse("writeDisk is for delta backups; this writer is full"));
    let relative: string;
    try {
      relative = vhdRelativePath(this.options.jobId, vdiUuid, this.timestamp);
    } catch (error) {
      return Promise.reject(this.misuse(messageOf(error)));
    }
    return this.write(relative, source, options);
  }

  private async write(relative: string, source: Readable, options: WriteDataOptions): Promise<WrittenFile> {
    if (this.state !== "open") {
      source.destroy();
      throw this.misuse(`cannot write ${relative}: the backup is already ${this.state}`);
    }
    if (this.written.has(relative)) {
      source.destroy();
      throw this.misuse(`${relative} was already written by this backup`);
    }
    const remotePath = resolveInVmDir(this.options.vmUuid, relative);
    const signals = [this.stop.signal, ...(options.signal ? [options.signal] : [])];
    const work = this.writeChecked(relative, remotePath, source, { signal: AbortSignal.any(signals), sizeHint: options.sizeHint });
    this.inFlight.add(work);
    try {
      const file = await work;
      this.written.set(relative, file);
      return file;
    } catch (error) {
      this.failure ??= error;
      throw error;
    } finally {
      this.inFlight.delete(work);
    }
  }

  /**
   * Writes one data file and what checks it later: the SHA-256 of an XVA (into the metadata), or a VHD's block checksums
   * (a `.blocksums` file beside it, written after the VHD is complete, before the metadata).
   */
  private async writeChecked(
    relative: string,
    remotePath: string,
    source: Readable,
    options: { signal: AbortSignal; sizeHint?: number },
  ): Promise<WrittenFile> {
    if (this.options.mode === "full") {
      const { stream, digest } = digestStream(source);
      this.created.add(remotePath);
      const { bytes } = await this.remote.writeStream(remotePath, stream, options);
      const { sha256, size } = await digest;
      return { path: relative, remotePath, bytes, integrity: { sha256, size } };
    }
    const { stream, checksums } = checksumVhdStream(source, remotePath);
    this.created.add(remotePath);
    const { bytes } = await this.remote.writeStream(remotePath, stream, options);
    const sums = await checksums;
    options.signal.throwIfAborted();
    const sumsPath = blockChecksumsPathOf(remotePath);
    this.created.add(sumsPath);
    await this.remote.writeFile(sumsPath, encodeBlockChecksums(sums));
    return { path: relative, remotePath, bytes, integrity: { blockChecksums: true } };
  }

  /**
   * Writes the metadata (last, atomically) and releases the lock. Refused when a write is still running or failed, when
   * `vhds` names a file this writer did not write or leaves one out, or when the lock was lost.
   * @returns the metadata as written
   * @throws RepositoryError WRITER_STATE, LOCKED, INVALID_METADATA
   */
  async commit(input: CommitInput): Promise<BackupMetadata> {
    if (this.state !== "open") throw this.misuse(`cannot commit: the backup is already ${this.state}`);
    if (this.inFlight.size > 0) throw this.misuse("cannot commit while a data write is still running; await it first");
    if (this.failure !== undefined) throw this.misuse(`cannot commit: a data write failed (${messageOf(this.failure)}); abort instead`);
    const { mode, jobId } = this.options;
    const files = [...this.written.keys()];
    if (mode === "full" && files.length !== 1) throw this.misuse("a full backup needs its XVA written before commit");
    if (mode === "delta") {
      const named = Object.values(input.vhds ?? {});
      const unknown = named.filter((path) => !this.written.has(path));
      const missing = files.filter((path) => !named.includes(path));
      if (named.length === 0 || unknown.length > 0 || missing.length > 0) {
        throw this.misuse(
          `vhds must name exactly the disks written (${files.join(", ") || "none"}); unknown: ${unknown.join(", ") || "none"}, left out: ${missing.join(", ") || "none"}`,
        );
      }
    }
    const immutableUntil = immutableUntilFor(this.remote, this.timestamp);
    const metadata: BackupMetadata = {
      version: XO_METADATA_VERSION,
      mode,
      jobId,
      scheduleId: input.scheduleId,
      timestamp: this.timestamp,
      vm: input.vm,
      vmSnapshot: input.vmSnapshot,
      size: [...this.written.values()].reduce((sum, file) => sum + file.bytes, 0),
      tags: input.tags ?? [],
      ...(mode === "full"
        ? { xva: xvaRelativePath(this.timestamp) }
        : {
            vbds: input.vbds ?? {},
            vdis: input.vdis ?? {},
            vifs: input.vifs ?? {},
            vtpms: input.vtpms ?? [],
            vhds: input.vhds,
            isVhdDifferencing: input.isVhdDifferencing ?? {},
          }),
      cairn: {
        formatVersion: METADATA_FORMAT_VERSION,
        // The window is the target remote's, never one a copied backup's metadata carried from its source remote.
        ...withoutImmutability(input.cairn),
        integrity: {
          algorithm: "sha256",
          files: Object.fromEntries([...this.written.values()].map((file) => [file.path, file.integrity])),
        },
        ...(immutableUntil ? { immutableUntil: immutableUntil.toISOString() } : {}),
      },
    };
    const text = serializeBackupMetadata(metadata);
    const sealed = parseBackupMetadata(text, this.metadataPath); // never write what we would refuse to read
    await this.lock.confirm(); // a remote check right before the metadata: a writer that lost its lock never commits
    this.lock.assertHeld();
    await this.remote.writeFile(this.metadataPath, text);
    this.state = "committed";
    try {
      await this.remote.delete(`${vmDir(this.options.vmUuid)}/${XO_CACHE_NAME}`);
      if (immutableUntil) await this.protectAll(immutableUntil);
    } finally {
      await this.lock.release();
    }
    return sealed;
  }

  /**
   * The backup is complete (its metadata written, which names the date): every file of it becomes immutable, metadata
   * included, still under the lock, so no retention sees it complete and unprotected.
   */
  private async protectAll(until: Date): Promise<void> {
    const paths = [...this.created, this.metadataPath];
    try {
      if (this.remote.protect === undefined) throw new Error(`${this.remote.name} cannot make files immutable`);
      // A window already over by the storage's own clock (a mirror's copy of an old backup) protects nothing: S3 refuses a
      // retention date in the past, and a lock that retention would lift at once is no lock.
      if (until.getTime() <= (await remoteNow(this.remote, vmDir(this.options.vmUuid))).getTime()) return;
      for (const path of paths) await this.remote.protect(path, until);
    } catch (error) {
      throw new RepositoryError(
        RepositoryErrorReason.Immutable,
        `backup ${formatBackupTimestamp(this.timestamp)} of VM ${this.options.vmUuid} is complete but could not be made immutable until ${until.toISOString()}: ${messageOf(error)}; test the remote (it says why), then run the job again`,
        { path: this.metadataPath },
        { cause: error },
      );
    }
  }

  /**
   * Stops writes in flight, deletes every file this backup wrote, releases the lock. Idempotent; after commit it does
   * nothing (a committed backup is removed by retention only).
   */
  async abort(): Promise<void> {
    if (this.state !== "open") return;
    this.state = "aborted";
    this.stop.abort(new Error("the backup was aborted"));
    await Promise.allSettled([...this.inFlight]);
    try {
      for (const path of this.created) await this.remote.delete(path);
    } finally {
      await this.lock.release();
    }
  }

  private misuse(message: string): RepositoryError {
    return new RepositoryError(
      RepositoryErrorReason.WriterState,
      `backup ${formatBackupTimestamp(this.timestamp)} of VM ${this.options.vmUuid}: ${message}`,
      { path: this.metadataPath },
    );
  }
}

function withoutImmutability<T extends { immutableUntil?: string }>(cairn: T): Omit<T, "immutableUntil"> {
  const { immutableUntil: _fromSource, ...rest } = cairn;
  return rest;
}

/**
 * Starts a backup: takes the VM folder's lock and checks that no backup exists at this time.
 * @throws RepositoryError LOCKED (another writer, retention or cleaner holds the VM), ALREADY_EXISTS
 */
export async function beginBackup(remote: Remote, options: BeginBackupOptions): Promise<BackupWriter> {
  checkSegment("vmUuid", options.vmUuid);
  checkSegment("jobId", options.jobId);
  if (options.mode !== "full" && options.mode !== "delta")
    throw new Error(`mode must be "full" or "delta", got ${JSON.stringify(options.mode)}`);
  const path = metadataPath(options.vmUuid, options.timestamp);
  const lock = await acquireVmLock(
    remote,
    options.vmUuid,
    `backup ${formatBackupTimestamp(options.timestamp)} of job ${options.jobId}`,
    options.lock,
  );
  try {
    const exists = await remote.stat(path).then(
      () => true,
      (error: unknown) => {
        if (isNotFound(error)) return false;
        throw error;
      },
    );
    if (exists) {
      throw new RepositoryError(
        RepositoryErrorReason.AlreadyExists,
        `a backup of VM ${options.vmUuid} already exists at ${formatBackupTimestamp(options.timestamp)} (${path}); use another timestamp (file names have one-second precision)`,
        { path },
      );
    }
  } catch (error) {
    await lock.release();
    throw error;
  }
  return new BackupWriter(remote, options, lock);
}
