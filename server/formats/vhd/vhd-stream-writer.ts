import { Readable } from "node:stream";
import {
  BAT_UNUSED,
  DiskType,
  FOOTER_SIZE,
  HEADER_VERSION,
  PlatformCode,
  SECTOR_SIZE,
  VHD_BLOCK_SIZE,
  bitmapSizeFor,
} from "./constants.js";
import { encodeFooter, newFooter } from "./footer.js";
import { NULL_UUID, emptyLocators, encodeHeader } from "./header.js";
import { STREAM_BAT_OFFSET, STREAM_LOCATOR_OFFSET, batSizeBytes, blockCountFor, encodeBat } from "./layout.js";
import { isUuid, randomUuid } from "./uuid.js";
import { VhdError } from "./vhd-error.js";

/** One allocated block handed to the writer. */
export interface VhdBlock {
  index: number;
  /** Exactly `VHD_BLOCK_SIZE` bytes: one buffer, or consecutive pieces (written as they are, never joined). */
  data: Buffer | readonly Buffer[];
  /** Sector bitmap (512 bytes, MSB first). @default all 0xFF: every sector present */
  bitmap?: Buffer;
}

export interface VhdWriteOptions {
  /** Bytes (VDI.virtual_size); a multiple of 512, not necessarily of the block size. */
  virtualSize: number;
  /** Footer unique id. @default a random uuid */
  uuid?: string;
  /** Present: a differencing VHD (type 4) whose parent is this; absent: a dynamic VHD (type 3). */
  parent?: { uuid: string; name?: string; timestamp?: Date };
  /** Sorted, distinct indexes of the blocks that `blocks` will yield: the BAT is written up front. */
  blockIndexes: readonly number[];
  /** Yields exactly the blocks of `blockIndexes`, in that order. */
  blocks: AsyncIterable<VhdBlock> | Iterable<VhdBlock>;
  /** Four characters. @default "cain" */
  creatorApplication?: string;
}

const FULL_BITMAP = Buffer.alloc(bitmapSizeFor(VHD_BLOCK_SIZE), 0xff);

/** Exact byte length of the stream {@link createVhdStream} produces for these figures. */
export function vhdStreamSize(options: { virtualSize: number; blockCount: number }): number {
  const entries = blockCountFor(options.virtualSize, VHD_BLOCK_SIZE);
  return STREAM_BAT_OFFSET + batSizeBytes(entries) + options.blockCount * (FULL_BITMAP.length + VHD_BLOCK_SIZE) + FOOTER_SIZE;
}

function checkOptions(options: VhdWriteOptions, entries: number): void {
  const bad = (detail: string): never => {
    throw new VhdError("VHD_BAD_INPUT", detail, { structure: "write options" });
  };
  const { virtualSize } = options;
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0 || virtualSize % SECTOR_SIZE !== 0) {
    bad(`virtualSize ${virtualSize} must be a non-negative multiple of 512`);
  }
  if (options.uuid !== undefined && !isUuid(options.uuid)) bad(`uuid ${JSON.stringify(options.uuid)} is not a uuid`);
  if (options.parent && !isUuid(options.parent.uuid)) bad(`parent uuid ${JSON.stringify(options.parent.uuid)} is not a uuid`);
  let previous = -1;
  for (const index of options.blockIndexes) {
    if (!Number.isInteger(index) || index <= previous || index >= entries) {
      bad(`blockIndexes must be sorted, distinct and below ${entries}; found ${index} after ${previous}`);
    }
    previous = index;
  }
}

/**
 * A dynamic (or, with `parent`, differencing) VHD as a byte stream, in the layout XAPI's
 * `/export_raw_vdi?format=vhd` emits. Memory stays at about one block: blocks are pulled from `blocks` only as
 * the consumer reads. A block that does not match `blockIndexes` or has the wrong size destroys the stream with
 * a VhdError (VHD_BAD_INPUT, VHD_BITMAP_MISMATCH).
 */
export function createVhdStream(options: VhdWriteOptions): Readable {
  return Readable.from(generateVhd(options), { objectMode: false, highWaterMark: 1024 * 1024 });
}

async function* generateVhd(options: VhdWriteOptions): AsyncGenerator<Buffer> {
  const entries = blockCountFor(options.virtualSize, VHD_BLOCK_SIZE);
  checkOptions(options, entries);
  const diskType = options.parent ? DiskType.Differencing : DiskType.Dynamic;
  const footer = encodeFooter(
    newFooter({
      currentSize: options.virtualSize,
      diskType,
      uuid: options.uuid ?? randomUuid(),
      creatorApplication: options.creatorApplication,
    }),
  );
  const locators = emptyLocators();
  const locatorSector = Buffer.alloc(SECTOR_SIZE);
  const parentName = options.parent?.name ?? "";
  if (options.parent && parentName !== "") {
    const path = Buffer.from(parentName, "utf16le").subarray(0, SECTOR_SIZE);
    path.copy(locatorSector);
    locators[0] = {
      platformCode: PlatformCode.W2ru,
      platformDataSpace: 1,
      platformDataLength: path.length,
      platformDataOffset: STREAM_LOCATOR_OFFSET,
    };
  }
  const header = encodeHeader({
    tableOffset: STREAM_BAT_OFFSET,
    headerVersion: HEADER_VERSION,
    maxTableEntries: entries,
    blockSize: VHD_BLOCK_SIZE,
    checksum: 0,
    parentUuid: options.parent?.uuid ?? NULL_UUID,
    parentTimestamp: options.parent?.timestamp ?? new Date(0),
    parentUnicodeName: parentName,
    parentLocators: locators,
  });
  const bat = new Uint32Array(entries).fill(BAT_UNUSED);
  const stride = FULL_BITMAP.length + VHD_BLOCK_SIZE;
  const firstBlockSector = (STREAM_BAT_OFFSET + batSizeBytes(entries)) / SECTOR_SIZE;
  options.blockIndexes.forEach((index, rank) => {
    bat[index] = firstBlockSector + (rank * stride) / SECTOR_SIZE;
  });
  yield footer;
  yield header;
  yield locatorSector;
  yield encodeBat(bat);
  let rank = 0;
  for await (const block of options.blocks) {
    const expected = options.blockIndexes[rank];
    const where = { structure: `block ${block.index}` };
    if (block.index !== expected) {
      throw new VhdError(
        "VHD_BAD_INPUT",
        `blocks yielded index ${block.index} where blockIndexes announced ${expected ?? "no more blocks"}`,
        where,
      );
    }
    const pieces = Buffer.isBuffer(block.data) ? [block.data] : block.data;
    const length = pieces.reduce((sum, piece) => sum + piece.length, 0);
    if (length !== VHD_BLOCK_SIZE) {
      throw new VhdError("VHD_BITMAP_MISMATCH", `block data is ${length} bytes, expected ${VHD_BLOCK_SIZE}`, where);
    }
    if (block.bitmap !== undefined && block.bitmap.length !== FULL_BITMAP.length) {
      throw new VhdError("VHD_BITMAP_MISMATCH", `bitmap is ${block.bitmap.length} bytes, expected ${FULL_BITMAP.length}`, where);
    }
    yield block.bitmap ?? FULL_BITMAP;
    for (const piece of pieces) if (piece.length > 0) yield piece;
    rank++;
  }
  if (rank !== options.blockIndexes.length) {
    throw new VhdError("VHD_BAD_INPUT", `blocks ended after ${rank} of ${options.blockIndexes.length} announced blocks`, {
      structure: "blocks",
    });
  }
  yield footer;
}
