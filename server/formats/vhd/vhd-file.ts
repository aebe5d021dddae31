import { type FileHandle, open } from "node:fs/promises";
import { DiskType, FOOTER_SIZE, HEADER_SIZE, SECTOR_SIZE, VHD_BLOCK_SIZE, BAT_UNUSED, bitmapSizeFor } from "./constants.js";
import { type VhdFooter, decodeFooter } from "./footer.js";
import { type VhdHeader, decodeHeader } from "./header.js";
import { blockCountFor, decodeBat, placeBlocks } from "./layout.js";
import { VhdError } from "./vhd-error.js";

/**
 * Random-access reader of one VHD file (fixed, dynamic or differencing). `open` checks the footer, header and
 * every BAT entry (inside the file, no overlaps) so that later reads never return garbage silently.
 */
export class VhdFile {
  /** Fixed disks have no header. */
  readonly header: VhdHeader | undefined;
  readonly blockSize: number;
  readonly bitmapSize: number;
  /** Number of BAT entries (blocks addressable). */
  readonly blockCount: number;
  private readonly fullBitmap: Buffer;
  private bitmapCache = new Map<number, Buffer>();

  private constructor(
    readonly path: string,
    /** @internal used by the merge to write in place */
    readonly handle: FileHandle,
    readonly footer: VhdFooter,
    header: VhdHeader | undefined,
    /** @internal sector of each block's bitmap, or BAT_UNUSED */
    readonly bat: Uint32Array,
    /** File size when opened. */
    readonly size: number,
  ) {
    this.header = header;
    this.blockSize = header?.blockSize ?? VHD_BLOCK_SIZE;
    this.bitmapSize = bitmapSizeFor(this.blockSize);
    this.blockCount = bat.length;
    this.fullBitmap = Buffer.alloc(this.bitmapSize, 0xff);
  }

  /**
   * Opens and checks a VHD. `writable` opens it read-write (for the merge).
   * @throws VhdError VHD_TRUNCATED, VHD_BAD_COOKIE, VHD_BAD_CHECKSUM, VHD_BAD_FIELD, VHD_BAT_OUT_OF_RANGE, VHD_BITMAP_MISMATCH
   */
  static async open(path: string, options: { writable?: boolean } = {}): Promise<VhdFile> {
    const handle = await open(path, options.writable ? "r+" : "r");
    try {
      return await VhdFile.load(path, handle);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /**
   * Opens and checks a VHD held elsewhere (a file on a remote), read through `source`; read-only. `name` is used in
   * messages. The source is closed by {@link VhdFile.close}, or here if the checks fail.
   * @throws the same VhdErrors as {@link VhdFile.open}
   */
  static async openSource(name: string, source: VhdByteSource): Promise<VhdFile> {
    try {
      return await VhdFile.load(name, sourceHandle(source));
    } catch (error) {
      await source.close();
      throw error;
    }
  }

  private static async load(path: string, handle: FileHandle): Promise<VhdFile> {
    const file = path;
    const size = (await handle.stat()).size;
    if (size < FOOTER_SIZE) throw new VhdError("VHD_TRUNCATED", `the file is ${size} bytes, shorter than a footer`, { file, structure: "footer", offset: 0 });
    const footerAt = size - FOOTER_SIZE;
    let footer: VhdFooter;
    try {
      footer = decodeFooter(await readAt(handle, footerAt, FOOTER_SIZE), { file, offset: footerAt });
    } catch (error) {
      const needed = await sizeNeededByCopy(handle, file);
      if (needed !== undefined && size < needed) {
        throw new VhdError("VHD_TRUNCATED", `the file is ${size} bytes but its footer copy, header and BAT need ${needed}: the file was cut`, { file, structure: "footer", offset: footerAt });
      }
      throw error;
    }
    if (footer.diskType === DiskType.Fixed) {
      if (footerAt < footer.currentSize) {
        throw new VhdError("VHD_TRUNCATED", `a fixed disk of ${footer.currentSize} bytes needs ${footer.currentSize + FOOTER_SIZE} bytes of file, found ${size}`, { file, structure: "data", offset: 0 });
      }
      const entries = blockCountFor(footer.currentSize, VHD_BLOCK_SIZE);
      const bat = new Uint32Array(entries);
      for (let i = 0; i < entries; i++) bat[i] = (i * VHD_BLOCK_SIZE) / SECTOR_SIZE;
      return new VhdFile(path, handle, footer, undefined, bat, size);
    }
    const dataOffset = footer.dataOffset as number;
    if (dataOffset + HEADER_SIZE > footerAt) {
      throw new VhdError("VHD_TRUNCATED", `the header at ${dataOffset} lies past the end of the data (${footerAt})`, { file, structure: "header", offset: dataOffset });
    }
    const header = decodeHeader(await readAt(handle, dataOffset, HEADER_SIZE), { file, offset: dataOffset });
    const needed = blockCountFor(footer.currentSize, header.blockSize);
    if (header.maxTableEntries < needed) {
      throw new VhdError("VHD_BAD_FIELD", `max table entries ${header.maxTableEntries} cannot cover ${footer.currentSize} bytes in ${header.blockSize}-byte blocks (${needed} needed)`, { file, structure: "header", offset: dataOffset });
    }
    const batBytes = header.maxTableEntries * 4;
    if (header.tableOffset + batBytes > footerAt) {
      throw new VhdError("VHD_TRUNCATED", `the BAT (${batBytes} bytes at ${header.tableOffset}) runs past the end of the data (${footerAt})`, { file, structure: "BAT", offset: header.tableOffset });
    }
    const bat = decodeBat(await readAt(handle, header.tableOffset, batBytes), header.maxTableEntries);
    placeBlocks(bat, header.blockSize, { minOffset: Math.min(header.tableOffset + batBytes, dataOffset + HEADER_SIZE), maxOffset: footerAt, file });
    return new VhdFile(path, handle, footer, header, bat, size);
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
    const cached = this.bitmapCache.get(index);
    if (cached) return cached;
    const bitmap = await readAt(this.handle, at, this.bitmapSize);
    if (this.bitmapCache.size >= 256) this.bitmapCache.delete(this.bitmapCache.keys().next().value as number);
    this.bitmapCache.set(index, bitmap);
    return bitmap;
  }

  /** @internal the merge rewrites bitmaps: drop what this reader remembers. */
  forgetBitmap(index: number): void {
    this.bitmapCache.delete(index);
  }

  /** The block's data (`blockSize` bytes; zeros if unallocated, zero-padded past the end of a fixed disk). */
  async readBlock(index: number): Promise<Buffer> {
    const at = this.dataOffset(index);
    const data = Buffer.alloc(this.blockSize);
    if (at === undefined) return data;
    const length = this.diskType === DiskType.Fixed ? Math.min(this.blockSize, this.virtualSize - index * this.blockSize) : this.blockSize;
    await this.handle.read(data, 0, length, at);
    return data;
  }

  /** Reads `length` bytes of block `index`'s data starting `start` bytes into the block, into `target` at `targetOffset`. */
  async readBlockRange(index: number, start: number, length: number, target: Buffer, targetOffset: number): Promise<void> {
    const at = this.dataOffset(index);
    if (at === undefined) return;
    const { bytesRead } = await this.handle.read(target, targetOffset, length, at + start);
    if (bytesRead < length) {
      throw new VhdError("VHD_TRUNCATED", `read ${bytesRead} of ${length} bytes`, { file: this.path, structure: `block ${index}`, offset: at + start });
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/** Random access to a VHD's bytes: `read` returns exactly `length` bytes within `size`. */
export interface VhdByteSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * The few FileHandle members a read-only VhdFile uses (stat, read at a position, close) over a byte source. Reads past
 * the end are short, as on a file. Only `openSource` builds one, and the merge (which writes) never sees it.
 */
function sourceHandle(source: VhdByteSource): FileHandle {
  const handle = {
    stat: async () => ({ size: source.size }),
    read: async (buffer: Buffer, offset: number, length: number, position: number) => {
      const available = Math.max(0, Math.min(length, source.size - position));
      if (available > 0) (await source.read(position, available)).copy(buffer, offset);
      return { bytesRead: available, buffer };
    },
    close: () => source.close(),
  };
  return handle as unknown as FileHandle;
}

async function readAt(handle: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buf, 0, length, offset);
  return bytesRead === length ? buf : buf.subarray(0, bytesRead);
}

/** From the footer copy at 0, the header and the BAT: the smallest file size that holds every block and the footer. */
async function sizeNeededByCopy(handle: FileHandle, file: string): Promise<number | undefined> {
  try {
    const copy = decodeFooter(await readAt(handle, 0, FOOTER_SIZE), { file, offset: 0 });
    if (copy.dataOffset === null) return undefined;
    const header = decodeHeader(await readAt(handle, copy.dataOffset, HEADER_SIZE), { file, offset: copy.dataOffset });
    const batBytes = header.maxTableEntries * 4;
    const bat = decodeBat(await readAt(handle, header.tableOffset, batBytes), header.maxTableEntries);
    let end = header.tableOffset + batBytes;
    for (const entry of bat) if (entry !== BAT_UNUSED) end = Math.max(end, entry * SECTOR_SIZE + bitmapSizeFor(header.blockSize) + header.blockSize);
    return end + FOOTER_SIZE;
  } catch {
    return undefined;
  }
}
