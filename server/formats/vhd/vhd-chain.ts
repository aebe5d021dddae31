import type { VhdBlockChecksums } from "./block-checksums.js";
import { DiskType, SECTOR_SIZE } from "./constants.js";
import { VhdError } from "./vhd-error.js";
import { VhdFile } from "./vhd-file.js";

function bitSet(bitmap: Buffer, sector: number): boolean {
  return (bitmap[sector >> 3] & (0x80 >> (sector & 7))) !== 0;
}

/**
 * A read-only view of a chain (a full disk plus its differencing children) as one virtual disk: `read` returns
 * the bytes a VM booted from the newest file would see. Opening checks that each child names its parent's uuid.
 *
 * A chain caught between the two last steps of a merge (the parent already carries the child's uuid and data,
 * the rename not yet done; see mergeVhdChain) is recognised: the stale child is skipped, so it still reads right.
 */
export class VhdChain {
  private constructor(
    /** Root (full) first, newest last. */
    readonly files: VhdFile[],
  ) {}

  /**
   * @param paths root (full) first, newest last
   * @param options.checksums one per path (undefined: that file is read unverified); a file with checksums is read
   *   verified (see {@link VhdFile.open}), so `read` fails with VHD_CHECKSUM_MISMATCH rather than return a damaged byte
   * @throws VhdError VHD_PARENT_MISMATCH (a child whose parent uuid is not its parent's, a differencing root),
   *   VHD_UNSUPPORTED (mixed block sizes), VHD_BAD_INPUT (not one checksums entry per path), and any error of VhdFile.open
   */
  static async open(paths: string[], options: { checksums?: Array<VhdBlockChecksums | undefined> } = {}): Promise<VhdChain> {
    const { checksums } = options;
    if (checksums && checksums.length !== paths.length) {
      throw new VhdError("VHD_BAD_INPUT", `${checksums.length} checksum tables for ${paths.length} files`, { structure: "chain" });
    }
    return VhdChain.openWith(paths.map((path, i) => () => VhdFile.open(path, { checksums: checksums?.[i] })));
  }

  /**
   * As {@link VhdChain.open}, over files the caller opens (e.g. with {@link VhdFile.openSource} on a remote), root first.
   * Each opener is called in order; on any failure the files already open are closed.
   */
  static async openWith(openers: Array<() => Promise<VhdFile>>): Promise<VhdChain> {
    if (openers.length === 0) throw new VhdError("VHD_BAD_INPUT", "a chain needs at least one file", { structure: "chain" });
    const files: VhdFile[] = [];
    try {
      for (const openFile of openers) files.push(await openFile());
      const kept = [files[0]];
      if (files[0].diskType === DiskType.Differencing) {
        throw new VhdError(
          "VHD_PARENT_MISMATCH",
          `the root of a chain must be a full disk, but it is differencing (parent ${files[0].header?.parentUuid})`,
          { file: files[0].path, structure: "footer" },
        );
      }
      for (const child of files.slice(1)) {
        const parent = kept[kept.length - 1];
        if (child.footer.uuid === parent.footer.uuid) {
          // An interrupted merge: the parent already holds this child. Closed now, as the chain only closes what it keeps (an
          // open handle on an SMB share keeps the merge's rename over this file from happening).
          files.splice(files.indexOf(child), 1);
          await child.close();
          continue;
        }
        if (child.diskType !== DiskType.Differencing || !child.header) {
          throw new VhdError(
            "VHD_PARENT_MISMATCH",
            `expected a differencing disk on top of ${parent.path}, found a ${DiskType[child.diskType]} disk`,
            { file: child.path, structure: "footer" },
          );
        }
        if (child.header.parentUuid !== parent.footer.uuid) {
          throw new VhdError(
            "VHD_PARENT_MISMATCH",
            `parent uuid ${child.header.parentUuid} does not match ${parent.path} (uuid ${parent.footer.uuid})`,
            { file: child.path, structure: "header", offset: (child.footer.dataOffset ?? 0) + 40 },
          );
        }
        if (child.blockSize !== parent.blockSize) {
          throw new VhdError("VHD_UNSUPPORTED", `block size ${child.blockSize} differs from its parent's ${parent.blockSize}`, {
            file: child.path,
            structure: "header",
          });
        }
        kept.push(child);
      }
      return new VhdChain(kept);
    } catch (error) {
      await Promise.all(files.map((file) => file.close()));
      throw error;
    }
  }

  get newest(): VhdFile {
    return this.files[this.files.length - 1];
  }

  get virtualSize(): number {
    return this.newest.virtualSize;
  }

  get blockSize(): number {
    return this.newest.blockSize;
  }

  /** Sorted indexes of the blocks allocated in any file of the chain. */
  allocatedBlocks(): number[] {
    const blocks = new Set<number>();
    const count = Math.ceil(this.virtualSize / this.blockSize);
    for (const file of this.files) {
      for (let i = 0; i < Math.min(count, file.blockCount); i++) if (file.hasBlock(i)) blocks.add(i);
    }
    return [...blocks].sort((a, b) => a - b);
  }

  /** True when no file of the chain has data in the range, so it reads as zeros without touching the disk. */
  isUnallocated(offset: number, length: number): boolean {
    const first = Math.floor(offset / this.blockSize);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / this.blockSize);
    for (let block = first; block <= last; block++) {
      if (this.files.some((file) => file.hasBlock(block) && block * this.blockSize < file.virtualSize)) return false;
    }
    return true;
  }

  /**
   * The bytes at [offset, offset + length) of the virtual disk.
   * @throws VhdError VHD_BAD_INPUT for a range outside the disk
   */
  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new VhdError("VHD_BAD_INPUT", `range ${offset}+${length} is outside the disk (${this.virtualSize} bytes)`, {
        file: this.newest.path,
        structure: "chain read",
        offset,
      });
    }
    const out = Buffer.alloc(length);
    let at = offset;
    while (at < offset + length) {
      const block = Math.floor(at / this.blockSize);
      const start = at - block * this.blockSize;
      const end = Math.min(this.blockSize, offset + length - block * this.blockSize);
      await this.readWithinBlock(block, start, end, out, at - offset);
      at += end - start;
    }
    return out;
  }

  /** Fills out[outAt ..] with bytes [start, end) of `block`, newest file first, sector by sector per the bitmaps. */
  private async readWithinBlock(block: number, start: number, end: number, out: Buffer, outAt: number): Promise<void> {
    const firstSector = Math.floor(start / SECTOR_SIZE);
    const lastSector = Math.ceil(end / SECTOR_SIZE);
    const pending = new Uint8Array(lastSector - firstSector).fill(1);
    let remaining = pending.length;
    for (let k = this.files.length - 1; k >= 0 && remaining > 0; k--) {
      const file = this.files[k];
      if (!file.hasBlock(block)) continue;
      const full = file.diskType !== DiskType.Differencing;
      const bitmap = full ? undefined : await file.readBitmap(block);
      let run = -1;
      for (let i = 0; i <= pending.length; i++) {
        const take = i < pending.length && pending[i] === 1 && (full || bitSet(bitmap as Buffer, firstSector + i));
        if (take && run < 0) run = i;
        if (!take && run >= 0) {
          await this.copyRun(file, block, firstSector + run, firstSector + i, start, end, out, outAt);
          pending.fill(0, run, i);
          remaining -= i - run;
          run = -1;
        }
      }
    }
  }

  private async copyRun(
    file: VhdFile,
    block: number,
    s0: number,
    s1: number,
    start: number,
    end: number,
    out: Buffer,
    outAt: number,
  ): Promise<void> {
    const from = Math.max(start, s0 * SECTOR_SIZE);
    // bytes past the end of a (smaller) parent's disk read as zeros
    const limit = Math.min(end, s1 * SECTOR_SIZE, file.virtualSize - block * this.blockSize);
    if (limit <= from) return;
    await file.readBlockRange(block, from, limit - from, out, outAt + (from - start));
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((file) => file.close()));
  }
}
