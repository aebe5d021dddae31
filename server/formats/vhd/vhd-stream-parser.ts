import type { Readable } from "node:stream";
import { ByteReader } from "../byte-reader.js";
import { DiskType, FOOTER_SIZE, HEADER_SIZE, bitmapSizeFor } from "./constants.js";
import { type VhdFooter, decodeFooter } from "./footer.js";
import { type VhdHeader, decodeHeader } from "./header.js";
import { blockCountFor, decodeBat, placeBlocks } from "./layout.js";
import { VhdError } from "./vhd-error.js";

export type VhdStreamItem =
  | { kind: "header"; footer: VhdFooter; header: VhdHeader }
  | { kind: "block"; index: number; bitmap: Buffer; data: Buffer };

/** As {@link VhdStreamItem}, with a block's data as the stream's own pieces (views, in order), not copied into one buffer. */
export type VhdStreamPiecesItem =
  | { kind: "header"; footer: VhdFooter; header: VhdHeader }
  | { kind: "block"; index: number; bitmap: Buffer; pieces: Buffer[] };

/**
 * Reads a dynamic or differencing VHD arriving as a stream (as `/export_raw_vdi?format=vhd` sends it), without
 * seeking: first a `header` item, then each allocated block in file order, then checks the closing footer.
 * The BAT and blocks must come at increasing offsets (as every streamed VHD has them). Holds one block at a time.
 * @throws VhdError naming `name`, the structure and the offset for any malformed or truncated input.
 */
export async function* parseVhdStream(source: AsyncIterable<Buffer> | Readable, name?: string): AsyncGenerator<VhdStreamItem> {
  for await (const item of parseVhdStreamPieces(source, name)) {
    if (item.kind === "header") yield item;
    else {
      const { pieces, ...block } = item;
      yield { ...block, data: pieces.length === 1 ? pieces[0] : Buffer.concat(pieces) };
    }
  }
}

/**
 * {@link parseVhdStream} without the copy of each block into one buffer: for a consumer that reads a block's bytes at once
 * (a hash) before it asks for the next item. The pieces are views of the source's chunks, valid as long as the source
 * leaves its chunks alone (streams do).
 */
export async function* parseVhdStreamPieces(source: AsyncIterable<Buffer> | Readable, name?: string): AsyncGenerator<VhdStreamPiecesItem> {
  const reader = new ByteReader(source);
  const file = name;
  try {
    const footerBuf = await reader.read(FOOTER_SIZE);
    if (footerBuf.length < FOOTER_SIZE) {
      throw new VhdError("VHD_TRUNCATED", `the stream ended after ${footerBuf.length} bytes, before the footer copy`, {
        file,
        structure: "footer copy",
        offset: 0,
      });
    }
    const footer = decodeFooter(footerBuf, { file, offset: 0 }, "footer copy");
    if (footer.diskType === DiskType.Fixed || footer.dataOffset === null) {
      throw new VhdError("VHD_UNSUPPORTED", "a fixed VHD cannot be read as a stream (its footer is at the end only)", {
        file,
        structure: "footer copy",
        offset: 0,
      });
    }
    await skipTo(reader, footer.dataOffset, file, "header");
    const headerBuf = await readExactly(reader, HEADER_SIZE, file, "header");
    const header = decodeHeader(headerBuf, { file, offset: footer.dataOffset });
    const needed = blockCountFor(footer.currentSize, header.blockSize);
    if (header.maxTableEntries < needed) {
      throw new VhdError(
        "VHD_BAD_FIELD",
        `max table entries ${header.maxTableEntries} cannot cover ${footer.currentSize} bytes in ${header.blockSize}-byte blocks (${needed} needed)`,
        { file, structure: "header", offset: footer.dataOffset },
      );
    }
    if (header.tableOffset < reader.position) {
      throw new VhdError(
        "VHD_UNSUPPORTED",
        `the BAT at ${header.tableOffset} comes before the header's end (${reader.position}); a stream cannot seek back`,
        { file, structure: "BAT", offset: header.tableOffset },
      );
    }
    await skipTo(reader, header.tableOffset, file, "BAT");
    const batBuf = await readExactly(reader, header.maxTableEntries * 4, file, "BAT");
    const bat = decodeBat(batBuf, header.maxTableEntries);
    yield { kind: "header", footer, header };
    const bitmapSize = bitmapSizeFor(header.blockSize);
    for (const block of placeBlocks(bat, header.blockSize, { minOffset: header.tableOffset + header.maxTableEntries * 4, file })) {
      const structure = `block ${block.index}`;
      await reader.skip(block.offset - reader.position);
      if (reader.position !== block.offset) {
        throw new VhdError("VHD_BAT_OUT_OF_RANGE", `block ${block.index} points past the end of the stream (${reader.position} bytes)`, {
          file,
          structure: `BAT entry ${block.index}`,
          offset: block.offset,
        });
      }
      const bitmap = await readExactly(reader, bitmapSize, file, `${structure} bitmap`);
      const pieces = await readPiecesExactly(reader, header.blockSize, file, `${structure} data`);
      yield { kind: "block", index: block.index, bitmap, pieces };
    }
    await readClosingFooter(reader, footerBuf, file);
  } finally {
    await reader.close();
  }
}

async function readExactly(reader: ByteReader, length: number, file: string | undefined, structure: string): Promise<Buffer> {
  const offset = reader.position;
  const buf = await reader.read(length);
  if (buf.length < length) throw truncated(buf.length, length, { file, structure, offset });
  return buf;
}

/** {@link readExactly}, as the stream's own pieces (ByteReader.readPieces). */
async function readPiecesExactly(reader: ByteReader, length: number, file: string | undefined, structure: string): Promise<Buffer[]> {
  const offset = reader.position;
  const pieces = await reader.readPieces(length);
  const received = reader.position - offset;
  if (received < length) throw truncated(received, length, { file, structure, offset });
  return pieces;
}

function truncated(received: number, length: number, where: { file: string | undefined; structure: string; offset: number }): VhdError {
  return new VhdError("VHD_TRUNCATED", `the stream ended after ${received} of ${length} bytes`, where);
}

async function skipTo(reader: ByteReader, offset: number, file: string | undefined, structure: string): Promise<void> {
  if (offset < reader.position) {
    throw new VhdError(
      "VHD_UNSUPPORTED",
      `${structure} at ${offset} lies before the current position ${reader.position}; a stream cannot seek back`,
      { file, structure, offset },
    );
  }
  await reader.skip(offset - reader.position);
  if (reader.position < offset) {
    throw new VhdError("VHD_TRUNCATED", `the stream ended at ${reader.position}, before the ${structure}`, { file, structure, offset });
  }
}

/** The last 512 bytes of the stream must be the footer; anything between the last block and it is skipped. */
async function readClosingFooter(reader: ByteReader, copy: Buffer, file: string | undefined): Promise<void> {
  let tail = Buffer.alloc(0);
  for (;;) {
    const chunk = await reader.read(64 * 1024);
    if (chunk.length === 0) break;
    tail = Buffer.concat([tail, chunk]);
    if (tail.length > FOOTER_SIZE) tail = tail.subarray(tail.length - FOOTER_SIZE);
  }
  const offset = reader.position - tail.length;
  if (tail.length < FOOTER_SIZE) {
    throw new VhdError("VHD_TRUNCATED", `the stream ended at ${reader.position} without its closing footer`, {
      file,
      structure: "footer",
      offset,
    });
  }
  const footer = decodeFooter(tail, { file, offset });
  const first = decodeFooter(copy, { file, offset: 0 }, "footer copy");
  if (footer.uuid !== first.uuid || footer.currentSize !== first.currentSize || footer.diskType !== first.diskType) {
    throw new VhdError("VHD_BAD_FIELD", "the closing footer does not match the footer copy at offset 0", {
      file,
      structure: "footer",
      offset,
    });
  }
}
