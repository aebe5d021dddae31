import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, mkdir, open, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { JsonStateFile } from "./json-state-file.js";
import { LabDiskError } from "./lab-disk-error.js";

/** Disks are kept and compared in blocks of this size (the VHD block size). */
export const DISK_BLOCK_SIZE = 2 * 1024 * 1024;

interface BlockEntry {
  /** The block file holding the data; shared (copy-on-write) between a disk and its snapshots. */
  file: number;
  /** The store generation of the last write into this block. */
  generation: number;
}

interface Disk {
  virtualSize: number;
  blocks: Map<number, BlockEntry>;
}

interface PersistedDisks {
  nextFile: number;
  generation: number;
  disks: Record<string, { virtualSize: number; blocks: Array<[index: number, file: number, generation: number]> }>;
}

const ZERO_BLOCK = Buffer.alloc(DISK_BLOCK_SIZE);

/**
 * The lab's virtual disks: sparse, in 2 MiB blocks, each block a (sparse) file under `dir/blocks`.
 *
 * A snapshot or clone copies the block map only and shares the block files (reference counts); the first
 * write into a shared block copies it. So a snapshot costs nothing, and the blocks that differ between a
 * disk and one of its snapshots are exactly those whose block file differs: a differencing export reads
 * the changed data only. Unallocated blocks read as zeros; virtual sizes up to 2 TiB and beyond cost
 * nothing until written. The maps persist in `dir/disks.json`.
 *
 * Reads take no lock; mutations are serialised.
 */
export class DiskStore {
  private readonly disks = new Map<string, Disk>();
  private readonly references = new Map<number, number>();
  private nextFile = 1;
  private generation = 0;
  private mutations: Promise<unknown> = Promise.resolve();
  private readonly stateFile: JsonStateFile<PersistedDisks>;

  constructor(readonly dir: string) {
    this.stateFile = new JsonStateFile(join(dir, "disks.json"), () => this.persisted());
  }

  /** Loads the maps and removes block files no disk references (left by a crash mid-write). */
  async open(): Promise<void> {
    await mkdir(join(this.dir, "blocks"), { recursive: true });
    const state = await this.stateFile.read();
    if (state !== undefined) {
      this.nextFile = state.nextFile;
      this.generation = state.generation;
      for (const [id, disk] of Object.entries(state.disks)) {
        const blocks = new Map<number, BlockEntry>();
        for (const [index, file, generation] of disk.blocks) {
          blocks.set(index, { file, generation });
          this.references.set(file, (this.references.get(file) ?? 0) + 1);
        }
        this.disks.set(id, { virtualSize: disk.virtualSize, blocks });
      }
    }
    for (const name of await readdir(join(this.dir, "blocks"))) {
      if (!this.references.has(Number(name.replace(/\.blk$/, "")))) await unlink(join(this.dir, "blocks", name));
    }
  }

  async close(): Promise<void> {
    await this.mutations;
    await this.stateFile.flush();
  }

  has(id: string): boolean {
    return this.disks.has(id);
  }

  virtualSize(id: string): number {
    return this.disk(id).virtualSize;
  }

  create(id: string, virtualSize: number): Promise<void> {
    checkSize(virtualSize);
    return this.mutate(async () => {
      if (this.disks.has(id)) throw new LabDiskError("LAB_DISK_EXISTS", `disk ${id} already exists`);
      this.disks.set(id, { virtualSize, blocks: new Map() });
    });
  }

  /** A new disk sharing every block of `sourceId` (copy-on-write): snapshots and clones. */
  share(sourceId: string, id: string): Promise<void> {
    return this.mutate(async () => {
      const source = this.disk(sourceId);
      const blocks = new Map<number, BlockEntry>();
      for (const [index, entry] of source.blocks) {
        blocks.set(index, { ...entry });
        this.references.set(entry.file, (this.references.get(entry.file) ?? 0) + 1);
      }
      this.disks.set(id, { virtualSize: source.virtualSize, blocks });
    });
  }

  /** A new disk with its own copy of every allocated block of `sourceId` (VM.copy). */
  copy(sourceId: string, id: string): Promise<void> {
    return this.mutate(async () => {
      const source = this.disk(sourceId);
      const blocks = new Map<number, BlockEntry>();
      for (const [index, entry] of source.blocks) {
        const file = this.nextFile++;
        await copyFile(this.blockPath(entry.file), this.blockPath(file), constants.COPYFILE_FICLONE);
        this.references.set(file, 1);
        blocks.set(index, { file, generation: entry.generation });
      }
      this.disks.set(id, { virtualSize: source.virtualSize, blocks });
    });
  }

  destroy(id: string): Promise<void> {
    return this.mutate(async () => {
      const disk = this.disk(id);
      this.disks.delete(id);
      for (const entry of disk.blocks.values()) await this.release(entry.file);
    });
  }

  /** Changes the virtual size; blocks beyond a smaller size are dropped. */
  resize(id: string, virtualSize: number): Promise<void> {
    checkSize(virtualSize);
    return this.mutate(async () => {
      const disk = this.disk(id);
      const blockCount = Math.ceil(virtualSize / DISK_BLOCK_SIZE);
      for (const [index, entry] of disk.blocks) {
        if (index >= blockCount) {
          disk.blocks.delete(index);
          await this.release(entry.file);
        }
      }
      disk.virtualSize = virtualSize;
    });
  }

  /** Writes `data` at `offset` (must lie within the virtual size). All-zero writes into holes allocate nothing. */
  write(id: string, offset: number, data: Buffer): Promise<void> {
    return this.mutate(async () => {
      const disk = this.disk(id);
      checkRange(id, disk, offset, data.length);
      let done = 0;
      while (done < data.length) {
        const position = offset + done;
        const index = Math.floor(position / DISK_BLOCK_SIZE);
        const inBlock = position % DISK_BLOCK_SIZE;
        const length = Math.min(DISK_BLOCK_SIZE - inBlock, data.length - done);
        await this.writeInBlock(disk, index, inBlock, data.subarray(done, done + length));
        done += length;
      }
    });
  }

  async read(id: string, offset: number, length: number): Promise<Buffer> {
    const disk = this.disk(id);
    checkRange(id, disk, offset, length);
    const result = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const index = Math.floor(position / DISK_BLOCK_SIZE);
      const inBlock = position % DISK_BLOCK_SIZE;
      const part = Math.min(DISK_BLOCK_SIZE - inBlock, length - done);
      const entry = disk.blocks.get(index);
      if (entry !== undefined) await this.readFile(entry.file, inBlock, result.subarray(done, done + part));
      done += part;
    }
    return result;
  }

  /** One whole block (zeros when unallocated or beyond the end). */
  async readBlock(id: string, index: number): Promise<Buffer> {
    const entry = this.disk(id).blocks.get(index);
    if (entry === undefined) return Buffer.alloc(DISK_BLOCK_SIZE);
    const block = Buffer.alloc(DISK_BLOCK_SIZE);
    await this.readFile(entry.file, 0, block);
    return block;
  }

  /** Whether `[offset, offset + length)` touches no allocated block (reads as zeros for certain). */
  isHole(id: string, offset: number, length: number): boolean {
    const disk = this.disk(id);
    const first = Math.floor(offset / DISK_BLOCK_SIZE);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / DISK_BLOCK_SIZE);
    for (let index = first; index <= last; index++) if (disk.blocks.has(index)) return false;
    return true;
  }

  /** Sorted indexes of the allocated blocks. */
  allocatedBlocks(id: string): number[] {
    return [...this.disk(id).blocks.keys()].sort((a, b) => a - b);
  }

  /** Sorted indexes of the blocks whose content may differ between `id` and `baseId`. */
  changedBlocks(id: string, baseId: string): number[] {
    const disk = this.disk(id);
    const base = this.disk(baseId);
    const changed = new Set<number>();
    for (const [index, entry] of disk.blocks) if (base.blocks.get(index)?.file !== entry.file) changed.add(index);
    const blockCount = Math.ceil(disk.virtualSize / DISK_BLOCK_SIZE);
    for (const index of base.blocks.keys()) if (!disk.blocks.has(index) && index < blockCount) changed.add(index);
    return [...changed].sort((a, b) => a - b);
  }

  /** Per-block write generations (allocated blocks only), for diagnostics and tests. */
  blockGenerations(id: string): Map<number, number> {
    return new Map([...this.disk(id).blocks].map(([index, entry]) => [index, entry.generation]));
  }

  /** Bytes allocated to the disk (its blocks, shared or not). */
  allocatedBytes(id: string): number {
    return this.disk(id).blocks.size * DISK_BLOCK_SIZE;
  }

  /** SHA-256 of the whole virtual content (holes hashed as zeros: proportional to the virtual size). */
  async sha256(id: string): Promise<string> {
    const disk = this.disk(id);
    const hash = createHash("sha256");
    const blockCount = Math.ceil(disk.virtualSize / DISK_BLOCK_SIZE);
    for (let index = 0; index < blockCount; index++) {
      const length = Math.min(DISK_BLOCK_SIZE, disk.virtualSize - index * DISK_BLOCK_SIZE);
      const entry = disk.blocks.get(index);
      if (entry === undefined) {
        hash.update(ZERO_BLOCK.subarray(0, length));
      } else {
        const block = Buffer.alloc(length);
        await this.readFile(entry.file, 0, block);
        hash.update(block);
      }
    }
    return hash.digest("hex");
  }

  private disk(id: string): Disk {
    const disk = this.disks.get(id);
    if (disk === undefined) throw new LabDiskError("LAB_DISK_MISSING", `no disk ${id} in ${this.dir}`);
    return disk;
  }

  private async writeInBlock(disk: Disk, index: number, inBlock: number, data: Buffer): Promise<void> {
    let entry = disk.blocks.get(index);
    if (entry === undefined) {
      if (isZero(data)) return;
      const file = this.nextFile++;
      const handle = await open(this.blockPath(file), "w");
      try {
        await handle.truncate(DISK_BLOCK_SIZE);
      } finally {
        await handle.close();
      }
      this.references.set(file, 1);
      entry = { file, generation: 0 };
      disk.blocks.set(index, entry);
    } else if ((this.references.get(entry.file) ?? 0) > 1) {
      const file = this.nextFile++;
      await copyFile(this.blockPath(entry.file), this.blockPath(file), constants.COPYFILE_FICLONE);
      this.references.set(file, 1);
      await this.release(entry.file);
      entry = { file, generation: 0 };
      disk.blocks.set(index, entry);
    }
    entry.generation = ++this.generation;
    const handle = await open(this.blockPath(entry.file), "r+");
    try {
      await handle.write(data, 0, data.length, inBlock);
    } finally {
      await handle.close();
    }
  }

  private async readFile(file: number, position: number, into: Buffer): Promise<void> {
    const handle = await open(this.blockPath(file), "r");
    try {
      let done = 0;
      while (done < into.length) {
        const { bytesRead } = await handle.read(into, done, into.length - done, position + done);
        if (bytesRead === 0) break; // a short block file reads as zeros beyond its end
        done += bytesRead;
      }
    } finally {
      await handle.close();
    }
  }

  private async release(file: number): Promise<void> {
    const count = (this.references.get(file) ?? 1) - 1;
    if (count > 0) {
      this.references.set(file, count);
      return;
    }
    this.references.delete(file);
    await unlink(this.blockPath(file));
  }

  private blockPath(file: number): string {
    return join(this.dir, "blocks", `${file}.blk`);
  }

  private mutate<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.mutations.then(operation);
    this.mutations = result.then(
      () => this.stateFile.schedule(),
      () => this.stateFile.schedule(),
    );
    return result;
  }

  private persisted(): PersistedDisks {
    const disks: PersistedDisks["disks"] = {};
    for (const [id, disk] of this.disks) {
      disks[id] = {
        virtualSize: disk.virtualSize,
        blocks: [...disk.blocks].map(([index, entry]) => [index, entry.file, entry.generation]),
      };
    }
    return { nextFile: this.nextFile, generation: this.generation, disks };
  }
}

function isZero(data: Buffer): boolean {
  for (let offset = 0; offset < data.length; offset += DISK_BLOCK_SIZE) {
    const part = data.subarray(offset, offset + DISK_BLOCK_SIZE);
    if (!part.equals(ZERO_BLOCK.subarray(0, part.length))) return false;
  }
  return true;
}

function checkSize(virtualSize: number): void {
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) {
    throw new LabDiskError("LAB_DISK_BAD_SIZE", `virtual size must be a non-negative integer of bytes, got ${virtualSize}`);
  }
}

function checkRange(id: string, disk: Disk, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > disk.virtualSize) {
    throw new LabDiskError(
      "LAB_DISK_OUT_OF_RANGE",
      `range [${offset}, ${offset + length}) is outside disk ${id} of ${disk.virtualSize} bytes`,
    );
  }
}
