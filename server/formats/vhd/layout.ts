import { BAT_UNUSED, FOOTER_SIZE, HEADER_SIZE, SECTOR_SIZE, bitmapSizeFor } from "./constants.js";
import { VhdError } from "./vhd-error.js";

/** Offsets of the stream layout XAPI emits: footer copy, header, one locator sector, BAT, blocks, footer. */
export const STREAM_HEADER_OFFSET = FOOTER_SIZE;
export const STREAM_LOCATOR_OFFSET = FOOTER_SIZE + HEADER_SIZE;
export const STREAM_BAT_OFFSET = STREAM_LOCATOR_OFFSET + SECTOR_SIZE;

export function blockCountFor(virtualSize: number, blockSize: number): number {
  return Math.ceil(virtualSize / blockSize);
}

/** Bytes taken by a BAT of `entries` entries, padded to a sector (at least one sector). */
export function batSizeBytes(entries: number): number {
  return Math.max(SECTOR_SIZE, Math.ceil((entries * 4) / SECTOR_SIZE) * SECTOR_SIZE);
}

export function encodeBat(entries: Uint32Array): Buffer {
  const buf = Buffer.alloc(batSizeBytes(entries.length), 0xff);
  for (let i = 0; i < entries.length; i++) buf.writeUInt32BE(entries[i], i * 4);
  return buf;
}

export function decodeBat(buf: Buffer, entries: number): Uint32Array {
  const bat = new Uint32Array(entries);
  for (let i = 0; i < entries; i++) bat[i] = buf.readUInt32BE(i * 4);
  return bat;
}

export interface PlacedBlock {
  index: number;
  /** Absolute byte offset of the block's bitmap. */
  offset: number;
}

/**
 * Checks that every allocated BAT entry points to a block (bitmap + data) lying after `minOffset`, ending
 * before `maxOffset` when known, and that no two blocks overlap. Returns the blocks in file order.
 * @throws VhdError VHD_BAT_OUT_OF_RANGE, VHD_BITMAP_MISMATCH (overlapping blocks)
 */
export function placeBlocks(
  bat: Uint32Array,
  blockSize: number,
  limits: { minOffset: number; maxOffset?: number; file?: string },
): PlacedBlock[] {
  const stride = bitmapSizeFor(blockSize) + blockSize;
  const placed: PlacedBlock[] = [];
  for (let index = 0; index < bat.length; index++) {
    if (bat[index] === BAT_UNUSED) continue;
    const offset = bat[index] * SECTOR_SIZE;
    const where = { file: limits.file, structure: `BAT entry ${index}`, offset };
    if (offset < limits.minOffset) {
      throw new VhdError("VHD_BAT_OUT_OF_RANGE", `block ${index} starts before the end of the metadata (${limits.minOffset})`, where);
    }
    if (limits.maxOffset !== undefined && offset + stride > limits.maxOffset) {
      throw new VhdError(
        "VHD_BAT_OUT_OF_RANGE",
        `block ${index} (${stride} bytes) runs past the end of the data (${limits.maxOffset})`,
        where,
      );
    }
    placed.push({ index, offset });
  }
  placed.sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < placed.length; i++) {
    const prev = placed[i - 1];
    if (placed[i].offset < prev.offset + stride) {
      throw new VhdError(
        "VHD_BITMAP_MISMATCH",
        `block ${placed[i].index} overlaps block ${prev.index}: a ${bitmapSizeFor(blockSize)}-byte bitmap plus ${blockSize} data bytes do not fit between them`,
        { file: limits.file, structure: `BAT entry ${placed[i].index}`, offset: placed[i].offset },
      );
    }
  }
  return placed;
}
