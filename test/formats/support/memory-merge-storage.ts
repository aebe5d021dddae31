import type { MergeFile, MergeSource, MergeStorage } from "../../../server/formats/vhd/index.js";
import type { SeededRandom } from "./seeded-random.js";

/** Thrown by the storage at the injected crash, and by every call after it until {@link MemoryMergeStorage.reboot}. */
export class SimulatedCrash extends Error {}

type Change = { kind: "write"; offset: number; data: Buffer } | { kind: "truncate"; size: number };

/**
 * Bytes that grow without copying the whole file at each append (capacity doubles), and share the buffer they start from
 * until their first change (a fixture's files are not copied for every run that only reads them).
 */
class Bytes {
  private buffer: Buffer;
  private shared = true;
  length: number;

  constructor(initial: Buffer) {
    this.buffer = initial;
    this.length = initial.length;
  }

  private ensure(size: number): void {
    if (this.shared) {
      this.buffer = Buffer.from(this.buffer.subarray(0, this.length));
      this.shared = false;
    }
    if (size <= this.buffer.length) return;
    const grown = Buffer.alloc(Math.max(size, this.buffer.length * 2));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }

  apply(change: Change): void {
    if (change.kind === "truncate") {
      this.ensure(change.size);
      if (change.size > this.length) this.buffer.fill(0, this.length, change.size);
      this.length = change.size;
      return;
    }
    const end = change.offset + change.data.length;
    this.ensure(end);
    if (change.offset > this.length) this.buffer.fill(0, this.length, change.offset);
    change.data.copy(this.buffer, change.offset);
    this.length = Math.max(this.length, end);
  }

  view(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

/**
 * A file as a crash sees it: what is on stable storage, and the changes made since the last sync (short lists: the merge
 * syncs often), which readers see on top of it.
 */
class Inode {
  readonly durable: Bytes;
  unsynced: Change[] = [];

  constructor(bytes: Buffer) {
    this.durable = new Bytes(bytes);
  }

  get size(): number {
    let size = this.durable.length;
    for (const change of this.unsynced)
      size = change.kind === "truncate" ? change.size : Math.max(size, change.offset + change.data.length);
    return size;
  }

  /** What a reader sees now: the stable bytes with every unsynced change on top, in order. */
  read(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    let size = this.durable.length;
    this.durable.view().copy(out, 0, offset, Math.min(offset + length, size));
    for (const change of this.unsynced) {
      if (change.kind === "truncate") {
        // Bytes past the cut read as zeros from here on, until written again.
        if (change.size < offset + length) out.fill(0, Math.max(0, change.size - offset));
        size = change.size;
        continue;
      }
      const from = Math.max(offset, change.offset);
      const to = Math.min(offset + length, change.offset + change.data.length);
      if (from < to) change.data.copy(out, from - offset, from - change.offset, to - change.offset);
      size = Math.max(size, change.offset + change.data.length);
    }
    return out;
  }

  sync(): void {
    for (const change of this.unsynced) this.durable.apply(change);
    this.unsynced = [];
  }
}

/** Which unsynced changes reach stable storage in a crash: none, all, or a random subset (in order: a disk may reorder). */
export type CrashPolicy = "none" | "all" | SeededRandom;

/**
 * A MergeStorage in memory that models what a crash keeps: a file's writes are lost in a crash unless synced (any subset of
 * them may survive, as a disk writes back in any order), while whole-file replacements, renames and deletes are durable
 * when they return, as the interface promises. A crash can be injected before the n-th change (write, truncate, sync,
 * replace, rename, delete); from then on every call fails, as a dead process does nothing more. Bytes read and written
 * are counted.
 */
export class MemoryMergeStorage implements MergeStorage {
  private files = new Map<string, Inode>();
  /** Changes made so far (writes, truncates, syncs, replacements, renames, deletes). */
  changes = 0;
  /** Crash right before this change (1-based). */
  crashAt: number | undefined;
  private crashed = false;
  bytesRead = 0;
  bytesWritten = 0;

  constructor(files: Map<string, Buffer> = new Map()) {
    for (const [path, bytes] of files) this.files.set(path, new Inode(bytes));
  }

  paths(): string[] {
    return [...this.files.keys()].sort();
  }

  /** What a reader sees now in a file (a copy), or undefined when there is none. */
  content(path: string): Buffer | undefined {
    const inode = this.files.get(path);
    return inode?.read(0, inode.size);
  }

  /** The process died at the crash: what was on stable storage comes back, with the unsynced changes `policy` lets through. */
  reboot(policy: CrashPolicy): void {
    for (const inode of this.files.values()) {
      inode.unsynced = inode.unsynced.filter(() => policy === "all" || (policy !== "none" && policy.next() < 0.5));
      inode.sync();
    }
    this.crashed = false;
    this.crashAt = undefined;
  }

  private alive(): void {
    if (this.crashed) throw new SimulatedCrash("the process is dead");
  }

  private change(what: string): void {
    this.alive();
    this.changes++;
    if (this.changes === this.crashAt) {
      this.crashed = true;
      throw new SimulatedCrash(`crash before change ${this.changes} (${what})`);
    }
  }

  private inode(path: string): Inode {
    const inode = this.files.get(path);
    if (!inode) throw Object.assign(new Error(`${path}: no such file`), { code: "ENOENT" });
    return inode;
  }

  private handle(path: string, writable: boolean): MergeFile {
    const inode = this.inode(path);
    let closed = false;
    const open = () => {
      this.alive();
      if (closed) throw new Error(`${path}: closed`);
    };
    return {
      get size() {
        return inode.size;
      },
      read: async (offset, length) => {
        open();
        if (offset + length > inode.size) throw new RangeError(`${path}: read past the end`);
        this.bytesRead += length;
        return inode.read(offset, length);
      },
      write: async (offset, data) => {
        open();
        if (!writable) throw new Error(`${path}: opened read-only`);
        this.change(`write ${data.length} bytes at ${offset} of ${path}`);
        inode.unsynced.push({ kind: "write", offset, data: Buffer.from(data) });
        this.bytesWritten += data.length;
      },
      truncate: async (size) => {
        open();
        this.change(`truncate ${path}`);
        inode.unsynced.push({ kind: "truncate", size });
      },
      sync: async () => {
        open();
        this.change(`sync ${path}`);
        inode.sync();
      },
      close: async () => {
        closed = true;
      },
    };
  }

  async openForUpdate(path: string): Promise<MergeFile> {
    this.alive();
    return this.handle(path, true);
  }

  async openForRead(path: string): Promise<MergeSource> {
    this.alive();
    return this.handle(path, false);
  }

  async readFile(path: string): Promise<Buffer | undefined> {
    this.alive();
    const bytes = this.content(path);
    if (bytes) this.bytesRead += bytes.length;
    return bytes;
  }

  async writeFileDurably(path: string, bytes: Uint8Array | string): Promise<void> {
    this.change(`replace ${path}`);
    const data = Buffer.from(bytes);
    this.bytesWritten += data.length;
    this.files.set(path, new Inode(data));
  }

  async rename(from: string, to: string): Promise<void> {
    this.change(`rename ${from} to ${to}`);
    this.files.set(to, this.inode(from));
    this.files.delete(from);
  }

  async unlink(path: string): Promise<void> {
    this.change(`delete ${path}`);
    this.files.delete(path);
  }

  async exists(path: string): Promise<boolean> {
    this.alive();
    return this.files.has(path);
  }
}
