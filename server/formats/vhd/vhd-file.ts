import { open } from "node:fs/promises";
import { type VhdBlockChecksums, checksumOfBlock } from "./block-checksums.js";
import { DAMAGED_ADVICE, checkChecksumsDescribe } from "./checksum-match.js";
import { DiskType, FOOTER_SIZE, HEADER_SIZE, SECTOR_SIZE, VHD_BLOCK_SIZE, BAT_UNUSED, bitmapSizeFor } from "./constants.js";
import type { VhdFooter } from "./footer.js";
import { type VhdHeader, decodeHeader } from "./header.js";
import { blockCountFor, decodeBat, placeBlocks } from "./layout.js";
import { type MergeFile, nodeFsMergeStorage } from "./merge-storage.js";
import { VhdError } from "./vhd-error.js";
import { type FooterDamage, type PositionalReader, readAt, readHeaderCheckingCopy, readTrailingFooter } from "./vhd-footers.js";

/** How a file is opened. */
export interface VhdOpenOptions {
  /** Read-write (for the merge): opened through {@link nodeFsMergeStorage}, as {@link VhdFile.openForUpdate} would. */
  writable?: boolean;
  /**
   * The file's block checksums (its sidecar, decoded): checked against the BAT at open, and every block read is verified
   * whole against them before any of its bytes is returned.
   */
  checksums?: VhdBlockChecksums;
}

/** A block exactly as stored: bitmap then data (a fixed disk: data only, short at the end of the disk). */
export interface StoredBlock {
  bitmap: Buffer | undefined;
  data: Buffer;
  /** Absolute offset of the block in the file, and its stored length. */
  offset: number;
  length: number;
}

/** What a VhdFile reads through: a file handle, or a byte source adapted to one (reads past the end are short). */
interface VhdIo extends PositionalReader {
  close(): Promise<void>;
}

/** Verified blocks kept per file: enough for sequential reads and a read straddling two blocks, and memory stays flat. */
const VERIFIED_BLOCKS_KEPT = 2;

/**
 * Random-access reader of one VHD file (fixed, dynamic or differencing). `open` checks the footer, header and
 * every BAT entry (inside the file, no overlaps) so that later reads never return garbage silently. Opened with block
 * checksums, every block is verified before any of its bytes is returned (VHD_CHECKSUM_MISMATCH otherwise).
 */
export class VhdFile {
  /** Fixed disks have no header. */
  readonly header: VhdHeader | undefined;
  readonly blockSize: number;
  readonly bitmapSize: number;
  /** Number of BAT entries (blocks addressable). */
  readonly blockCount: number;
  /**
   * A footer found damaged at open: "trailing" (the file is read with the copy at offset 0) or "copy" (the copy at 0 is
   * damaged, the trailing one is used as always). {@link repairVhdFooter} rewrites it from the other.
   */
  readonly footerDamaged: FooterDamage | undefined;
  /** The block checksums every read is verified against, when given at open. */
  readonly checksums: VhdBlockChecksums | undefined;
  private readonly fullBitmap: Buffer;
  private bitmapCache = new Map<number, Buffer>();
  /** The last blocks verified (promises, so that concurrent reads of one block read it once). */
  private verifiedBlocks = new Map<number, Promise<StoredBlock>>();
  /** Set when opened for update: where the merge's writes go. */
  private readonly writer: MergeFile | undefined;

  private constructor(
    readonly path: string,
    /** @internal the reads of this file (the merge reads footers through it) */
    readonly io: VhdIo,
    readonly footer: VhdFooter,
    header: VhdHeader | undefined,
    /** @internal sector of each block's bitmap, or BAT_UNUSED */
    readonly bat: Uint32Array,
    /** File size when opened. */
    readonly size: number,
    checks: { footerDamaged?: FooterDamage; checksums?: VhdBlockChecksums; writer?: MergeFile },
  ) {
    this.writer = checks.writer;
    this.footerDamaged = checks.footerDamaged;
    this.checksums = checks.checksums;
    this.header = header;
    this.blockSize = header?.blockSize ?? VHD_BLOCK_SIZE;
    this.bitmapSize = bitmapSizeFor(this.blockSize);
    this.blockCount = bat.length;
    this.fullBitmap = Buffer.alloc(this.bitmapSize, 0xff);
  }

  /**
   * Opens and checks a VHD. `writable` opens it read-write (for the merge); `checksums` makes every read verified.
   * A damaged trailing footer is read past with the copy at offset 0 when the file is not cut ({@link footerDamaged}).
   * @throws VhdError VHD_TRUNCATED, VHD_BAD_COOKIE, VHD_BAD_CHECKSUM, VHD_BAD_FIELD, VHD_BAT_OUT_OF_RANGE, VHD_BITMAP_MISMATCH,
   *   VHD_CHECKSUM_MISMATCH (checksums that do not describe this file)
   */
  static async open(path: string, options: VhdOpenOptions = {}): Promise<VhdFile> {
    if (options.writable) return VhdFile.openForUpdate(path, await nodeFsMergeStorage.openForUpdate(path), options);
    const handle = await open(path, "r");
    try {
      return await VhdFile.load(path, handle, (await handle.stat()).size, { checksums: options.checksums });
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /**
   * Opens and checks a VHD to change it in place (the merge), read and written through `file` (a local file, a file on
   * a remote: see merge-storage.ts). `name` is used in messages. The file is closed by {@link VhdFile.close}, or here
   * if the checks fail.
   * @throws the same VhdErrors as {@link VhdFile.open}
   */
  static async openForUpdate(name: string, file: MergeFile, options: { checksums?: VhdBlockChecksums } = {}): Promise<VhdFile> {
    try {
      return await VhdFile.load(name, sourceHandle(file), file.size, { checksums: options.checksums, writer: file });
    } catch (error) {
      await file.close();
      throw error;
    }
  }

  /**
   * Opens and checks a VHD held elsewhere (a file on a remote), read through `source`; read-only. `name` is used in
   * messages. The source is closed by {@link VhdFile.close}, or here if the checks fail.
   * @throws the same VhdErrors as {@link VhdFile.open}
   */
  static async openSource(name: string, source: VhdByteSource, options: { checksums?: VhdBlockChecksums } = {}): Promise<VhdFile> {
    try {
      return await VhdFile.load(name, sourceHandle(source), source.size, { checksums: options.checksums });
    } catch (error) {
      await source.close();
      throw error;
    }
  }

  private static async load(
    path: string,
    handle: VhdIo,
    size: number,
    options: { checksums?: VhdBlockChecksums; writer?: MergeFile },
  ): Promise<VhdFile> {
    const { checksums, writer } = options;
    const file = path;
    if (size < FOOTER_SIZE)
      throw new VhdError("VHD_TRUNCATED", `the file is ${size} bytes, shorter than a footer`, { file, structure: "footer", offset: 0 });
    const footerAt = size - FOOTER_SIZE;
    const { footer, damaged } = await readTrailingFooter(handle, size, file);
    let footerDamaged = damaged;
    let opened: VhdFile;
    if (footer.diskType === DiskType.Fixed) {
      if (footerAt < footer.currentSize) {
        throw new VhdError(
          "VHD_TRUNCATED",
          `a fixed disk of ${footer.currentSize} bytes needs ${footer.currentSize + FOOTER_SIZE} bytes of file, found ${size}`,
          { file, structure: "data", offset: 0 },
        );
      }
      const entries = blockCountFor(footer.currentSize, VHD_BLOCK_SIZE);
      const bat = new Uint32Array(entries);
      for (let i = 0; i < entries; i++) bat[i] = (i * VHD_BLOCK_SIZE) / SECTOR_SIZE;
      opened = new VhdFile(path, handle, footer, undefined, bat, size, { checksums, writer });
    } else {
      const dataOffset = footer.dataOffset as number;
      if (dataOffset + HEADER_SIZE > footerAt) {
        throw new VhdError("VHD_TRUNCATED", `the header at ${dataOffset} lies past the end of the data (${footerAt})`, {
          file,
          structure: "header",
          offset: dataOffset,
        });
      }
      let headerBytes: Buffer;
      if (footerDamaged) {
        headerBytes = await readAt(handle, dataOffset, HEADER_SIZE);
      } else {
        const read = await readHeaderCheckingCopy(handle, dataOffset);
        headerBytes = read.header;
        if (read.copyDamaged) footerDamaged = "copy";
      }
      const header = decodeHeader(headerBytes, { file, offset: dataOffset });
      const needed = blockCountFor(footer.currentSize, header.blockSize);
      if (header.maxTableEntries < needed) {
        throw new VhdError(
          "VHD_BAD_FIELD",
          `max table entries ${header.maxTableEntries} cannot cover ${footer.currentSize} bytes in ${header.blockSize}-byte blocks (${needed} needed)`,
          { file, structure: "header", offset: dataOffset },
        );
      }
      const batBytes = header.maxTableEntries * 4;
      if (header.tableOffset + batBytes > footerAt) {
        throw new VhdError(
          "VHD_TRUNCATED",
          `the BAT (${batBytes} bytes at ${header.tableOffset}) runs past the end of the data (${footerAt})`,
          { file, structure: "BAT", offset: header.tableOffset },
        );
      }
      const bat = decodeBat(await readAt(handle, header.tableOffset, batBytes), header.maxTableEntries);
      placeBlocks(bat, header.blockSize, {
        minOffset: Math.min(header.tableOffset + batBytes, dataOffset + HEADER_SIZE),
        maxOffset: footerAt,
        file,
      });
      opened = new VhdFile(path, handle, footer, header, bat, size, { footerDamaged, checksums, writer });
    }
    if (checksums) checkChecksumsDescribe(opened, checksums);
    return opened;
  }

  get virtualSize(): number {
    return this.footer.currentSize;
  }

  get diskType(): DiskType {
    return this.footer.diskType;
  }

  hasBlock(index: number): boolean {
    return index >= 0 && index < this.bat.length && this.bat[index] !== BAT_UNUSED;
  }

  /** Absolute offset of block `index`'s bitmap (of its data for fixed disks), or undefined if unallocated. */
  blockOffset(index: number): number | undefined {
    return this.hasBlock(index) ? this.bat[index] * SECTOR_SIZE : undefined;
  }

  /** Absolute offset of block `index`'s data, or undefined if unallocated. */
  dataOffset(index: number): number | undefined {
    const at = this.blockOffset(index);
    if (at === undefined) return undefined;
    return this.diskType === DiskType.Fixed ? at : at + this.bitmapSize;
  }

  /** The block's sector bitmap: all ones for fixed disks, all zeros for an unallocated block. */
  async readBitmap(index: number): Promise<Buffer> {
    if (this.diskType === DiskType.Fixed) return this.fullBitmap;
    const at = this.blockOffset(index);
    if (at === undefined) return Buffer.alloc(this.bitmapSize);
    if (this.checksums) return (await this.verifiedBlock(index)).bitmap as Buffer;
    const cached = this.bitmapCache.get(index);
    if (cached) return cached;
    const bitmap = await readAt(this.io, at, this.bitmapSize);
    if (this.bitmapCache.size >= 256) this.bitmapCache.delete(this.bitmapCache.keys().next().value as number);
    this.bitmapCache.set(index, bitmap);
    return bitmap;
  }

  /** @internal the merge rewrites blocks: drop what this reader remembers of one. */
  forgetBitmap(index: number): void {
    this.bitmapCache.delete(index);
    this.verifiedBlocks.delete(index);
  }

  /** The block's data (`blockSize` bytes; zeros if unallocated, zero-padded past the end of a fixed disk). */
  async readBlock(index: number): Promise<Buffer> {
    const at = this.dataOffset(index);
    const data = Buffer.alloc(this.blockSize);
    if (at === undefined) return data;
    if (this.checksums) {
      (await this.verifiedBlock(index)).data.copy(data);
      return data;
    }
    const length = this.diskType === DiskType.Fixed ? Math.min(this.blockSize, this.virtualSize - index * this.blockSize) : this.blockSize;
    await this.io.read(data, 0, length, at);
    return data;
  }

  /** Reads `length` bytes of block `index`'s data starting `start` bytes into the block, into `target` at `targetOffset`. */
  async readBlockRange(index: number, start: number, length: number, target: Buffer, targetOffset: number): Promise<void> {
    const at = this.dataOffset(index);
    if (at === undefined) return;
    if (this.checksums) {
      const { data } = await this.verifiedBlock(index);
      const available = Math.max(0, Math.min(length, data.length - start));
      data.copy(target, targetOffset, start, start + available);
      if (available < length) {
        throw new VhdError("VHD_TRUNCATED", `read ${available} of ${length} bytes`, {
          file: this.path,
          structure: `block ${index}`,
          offset: at + start,
        });
      }
      return;
    }
    const { bytesRead } = await this.io.read(target, targetOffset, length, at + start);
    if (bytesRead < length) {
      throw new VhdError("VHD_TRUNCATED", `read ${bytesRead} of ${length} bytes`, {
        file: this.path,
        structure: `block ${index}`,
        offset: at + start,
      });
    }
  }

  /**
   * @internal Block `index` exactly as stored (what its checksum covers), in one read, neither verified nor cached; undefined
   * for an unallocated block.
   * @throws VhdError VHD_TRUNCATED when the file ends inside the block
   */
  async readStoredBlock(index: number): Promise<StoredBlock | undefined> {
    const offset = this.blockOffset(index);
    if (offset === undefined) return undefined;
    const fixed = this.diskType === DiskType.Fixed;
    const length = fixed ? Math.min(this.blockSize, this.virtualSize - index * this.blockSize) : this.bitmapSize + this.blockSize;
    const bytes = Buffer.allocUnsafe(length);
    const { bytesRead } = await this.io.read(bytes, 0, length, offset);
    if (bytesRead < length) {
      throw new VhdError("VHD_TRUNCATED", `read ${bytesRead} of the block's ${length} bytes`, {
        file: this.path,
        structure: `block ${index}`,
        offset: offset + bytesRead,
      });
    }
    if (fixed) return { bitmap: undefined, data: bytes, offset, length };
    return { bitmap: bytes.subarray(0, this.bitmapSize), data: bytes.subarray(this.bitmapSize), offset, length };
  }

  /** @internal The error a block that does not match its checksum raises: which file, which block, which bytes, what to do. */
  checksumMismatch(index: number, block: { offset: number; length: number }): VhdError {
    return new VhdError(
      "VHD_CHECKSUM_MISMATCH",
      `block ${index} (bytes ${block.offset} to ${block.offset + block.length - 1} of the file) does not match its checksum: ${DAMAGED_ADVICE}`,
      { file: this.path, structure: `block ${index}`, offset: block.offset },
    );
  }

  /** Block `index`, read whole and checked against its checksum; the last few are kept so that sequential reads read once. */
  private verifiedBlock(index: number): Promise<StoredBlock> {
    const kept = this.verifiedBlocks.get(index);
    if (kept) {
      this.verifiedBlocks.delete(index); // most recently used goes last
      this.verifiedBlocks.set(index, kept);
      return kept;
    }
    const pending = this.readVerified(index);
    this.verifiedBlocks.set(index, pending);
    if (this.verifiedBlocks.size > VERIFIED_BLOCKS_KEPT) this.verifiedBlocks.delete(this.verifiedBlocks.keys().next().value as number);
    pending.catch(() => {
      if (this.verifiedBlocks.get(index) === pending) this.verifiedBlocks.delete(index);
    });
    return pending;
  }

  private async readVerified(index: number): Promise<StoredBlock> {
    const block = (await this.readStoredBlock(index)) as StoredBlock;
    const expected = this.checksums?.entries[index];
    if (!expected || !checksumOfBlock(block.bitmap, block.data).equals(expected)) throw this.checksumMismatch(index, block);
    return block;
  }

  /**
   * @internal The merge writes in place: `data` at `position`, then {@link VhdFile.sync} where its order needs it durable.
   * Only a file opened for update can be written.
   */
  async writeAt(data: Uint8Array, position: number): Promise<void> {
    await this.updatable().write(position, data);
  }

  /** @internal Every write so far on stable storage. */
  async sync(): Promise<void> {
    await this.updatable().sync();
  }

  private updatable(): MergeFile {
    if (!this.writer)
      throw new VhdError("VHD_BAD_INPUT", "the file was opened read-only and cannot be changed", { file: this.path, structure: "file" });
    return this.writer;
  }

  async close(): Promise<void> {
    this.verifiedBlocks.clear();
    this.bitmapCache.clear();
    await this.io.close();
  }
}

/** Random access to a VHD's bytes: `read` returns exactly `length` bytes within `size`. */
export interface VhdByteSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * The reads of a VhdFile over a byte source: short past the end, as on a file. The source's `size` is read at each call,
 * so a file the merge grows reads its new blocks.
 */
function sourceHandle(source: VhdByteSource): VhdIo {
  return {
    read: async (buffer: Buffer, offset: number, length: number, position: number) => {
      const available = Math.max(0, Math.min(length, source.size - position));
      if (available > 0) (await source.read(position, available)).copy(buffer, offset);
      return { bytesRead: available };
    },
    close: () => source.close(),
  };
}
