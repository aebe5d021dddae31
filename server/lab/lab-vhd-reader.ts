/**
 * The lab's own reader of an uploaded VHD (`PUT /import_raw_vdi?format=vhd`), written from XAPI's receiving side and
 * sharing nothing with Cairn's VHD code (server/formats), so that a VHD Cairn gets wrong fails here as on a pool.
 *
 * XAPI hands the socket to `vhd-tool serve --source-format vhd --destination-size <Content-Length>`
 * (ocaml/xapi/import_raw_vdi.ml `localhost_handler`, ocaml/xapi/vhd_tool_wrapper.ml `receive`), which reads the stream
 * with ocaml-vhd's `From_input.openstream (Some size)` (vhd_format/f.ml) and writes each block's set sectors to the disk
 * (ocaml/vhd-tool/src/impl.ml `serve_vhd_to_raw`). That reader is strictly sequential:
 * - the footer at 0 (cookie `conectix`, version 0x00010000, a known disk type, checksum), then it skips forward to the
 *   footer's `data_offset` for the header (cookie `cxsparse`, data_offset all ones, version 0x00010000, block size a power
 *   of two, known parent locator codes, checksum), then forward to `table_offset` for the BAT;
 * - the blocks in the order of their physical offset (skipping forward to each: a skip backwards is an error), each a
 *   bitmap then the data;
 * - then the trailing footer at the last 512-byte boundary below `size`, the request's Content-Length
 *   (`footer_offset = (size - 1) land lnot 511`). So a Content-Length larger than the stream (XAPI's own 1 PiB
 *   convention for unknown lengths) skips past the end and fails, and a smaller one makes the skip go backwards.
 * Every failure of vhd-tool is reported by XAPI as `VDI_IO_ERROR ["Device I/O errors"]` (vhd_tool_wrapper.ml
 * `run_vhd_tool`); the reason is kept here in `LabVhdError.message` (or `LabEndOfFile`) for the lab's own tests and logs.
 */

import { LabByteInput } from "./lab-byte-input.js";

const SECTOR = 512;
const FOOTER_SIZE = 512;
const HEADER_SIZE = 1024;
const UNUSED = 0xffffffff;
const KNOWN_PLATFORM_CODES = new Set([0, 0x57693272, 0x5769326b, 0x57327275, 0x57326b75, 0x4d616320, 0x4d616358]);

export class LabVhdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LabVhdError";
  }
}

/** The one's complement of the byte sum, the checksum field (at `at`) counted as zero. */
function checksumOf(buf: Buffer, at: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) if (i < at || i >= at + 4) sum += buf[i];
  return ~sum >>> 0;
}

function uint64(buf: Buffer, at: number): number {
  const value = buf.readBigUInt64BE(at);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(value);
}

export interface LabVhdFooter {
  dataOffset: number;
  currentSize: number;
  diskType: "fixed" | "dynamic" | "differencing";
}

function readFooter(buf: Buffer, where: string): LabVhdFooter {
  const cookie = buf.toString("latin1", 0, 8);
  if (cookie !== "conectix") throw new LabVhdError(`${where}: Unsupported footer cookie: expected conectix, got ${JSON.stringify(cookie)}`);
  const version = buf.readUInt32BE(12);
  if (version !== 0x00010000) throw new LabVhdError(`${where}: Unsupported footer version: expected 10000, got ${version.toString(16)}`);
  const type = buf.readUInt32BE(60);
  const diskType = type === 2 ? "fixed" : type === 3 ? "dynamic" : type === 4 ? "differencing" : undefined;
  if (diskType === undefined) throw new LabVhdError(`${where}: unknown disk type ${type}`);
  const checksum = buf.readUInt32BE(64);
  const expected = checksumOf(buf, 64);
  if (checksum !== expected) throw new LabVhdError(`${where}: Invalid checksum. Expected ${hex8(expected)} got ${hex8(checksum)}`);
  return { dataOffset: uint64(buf, 16), currentSize: uint64(buf, 48), diskType };
}

interface LabVhdHeader {
  tableOffset: number;
  maxTableEntries: number;
  blockSize: number;
}

function readHeader(buf: Buffer): LabVhdHeader {
  const cookie = buf.toString("latin1", 0, 8);
  if (cookie !== "cxsparse") throw new LabVhdError(`header: Expected cookie cxsparse, got ${JSON.stringify(cookie)}`);
  if (buf.readBigUInt64BE(8) !== 0xffffffffffffffffn) throw new LabVhdError("header: Expected header data_offset ffffffffffffffff");
  const version = buf.readUInt32BE(24);
  if (version !== 0x00010000) throw new LabVhdError(`header: Expected header_version 10000, got ${version.toString(16)}`);
  const blockSize = buf.readUInt32BE(32);
  if (blockSize === 0) throw new LabVhdError("header: block size is zero");
  if ((blockSize & (blockSize - 1)) !== 0 || blockSize < SECTOR * 8) {
    throw new LabVhdError(`header: block_size is not a power of 2: ${blockSize.toString(16)}`);
  }
  for (let i = 0; i < 8; i++) {
    const code = buf.readUInt32BE(576 + i * 24);
    if (!KNOWN_PLATFORM_CODES.has(code)) throw new LabVhdError(`header: unknown platform_code: ${code.toString(16)}`);
  }
  const checksum = buf.readUInt32BE(36);
  const expected = checksumOf(buf, 36);
  if (checksum !== expected) throw new LabVhdError(`header: Invalid checksum. Expected ${hex8(expected)} got ${hex8(checksum)}`);
  return { tableOffset: uint64(buf, 16), maxTableEntries: buf.readUInt32BE(28), blockSize };
}

function hex8(value: number): string {
  return value.toString(16).padStart(8, "0");
}

/** vhd-tool's `skip_to`: forward only (a negative count makes its buffer slice fail). */
async function skipForward(input: LabByteInput, target: number, what: string): Promise<void> {
  if (target < input.offset) throw new LabVhdError(`cannot seek backwards to ${what} at ${target} (already at ${input.offset})`);
  await input.skipTo(target, what);
}

/** A run of consecutive sectors whose bitmap bits are set, at `offset` bytes into the virtual disk. */
export interface LabVhdSectors {
  offset: number;
  data: Buffer;
}

export interface LabVhdReadOptions {
  /** The request's Content-Length (vhd-tool's `--destination-size`); undefined: XAPI passes none and vhd-tool takes the device's size. */
  size: number | undefined;
  /** The size of the destination device, used when `size` is undefined (vhd-tool's `get_file_size`). */
  deviceSize: number;
}

/**
 * Reads an uploaded VHD as vhd-tool does and yields the sector runs to write, in stream order. Throws {@link LabVhdError}
 * for anything vhd-tool fails on. The footer is yielded first so the caller can check the disk (vhd-tool does not: it
 * fails on the first write beyond the device).
 */
export async function* readUploadedVhd(
  body: AsyncIterable<Buffer>,
  options: LabVhdReadOptions,
): AsyncGenerator<{ kind: "footer"; footer: LabVhdFooter } | ({ kind: "sectors" } & LabVhdSectors)> {
  const size = options.size ?? options.deviceSize;
  if (size === 0)
    throw new LabVhdError("Non-zero size required (either a pre-existing destination file or specified via --destination-size)");
  const input = new LabByteInput(body);
  try {
    const footer = readFooter(await input.read(FOOTER_SIZE, "the footer"), "footer");
    yield { kind: "footer", footer };
    await skipForward(input, footer.dataOffset, "the header");
    const header = readHeader(await input.read(HEADER_SIZE, "the header"));
    await skipForward(input, header.tableOffset, "the BAT");
    const batBytes = Math.ceil((header.maxTableEntries * 4) / SECTOR) * SECTOR;
    const bat = await input.read(batBytes, "the BAT");
    const blocks: { sector: number; index: number }[] = [];
    for (let index = 0; index < header.maxTableEntries; index++) {
      const sector = bat.readUInt32BE(index * 4);
      if (sector !== UNUSED) blocks.push({ sector, index });
    }
    // openstream visits the blocks by physical position (a map from physical sector to block index).
    blocks.sort((a, b) => a.sector - b.sector);
    const sectorsPerBlock = header.blockSize / SECTOR;
    const bitmapBytes = sectorsPerBlock / 8;
    for (const { sector, index } of blocks) {
      await skipForward(input, sector * SECTOR, `block ${index}`);
      const bitmap = await input.read(bitmapBytes, `the bitmap of block ${index}`);
      const isSet = (i: number) => (bitmap[i >> 3] & (0x80 >> (i & 7))) !== 0;
      for (let first = 0; first < sectorsPerBlock; ) {
        const set = isSet(first);
        let end = first + 1;
        while (end < sectorsPerBlock && isSet(end) === set) end++;
        const data = await input.read((end - first) * SECTOR, `the data of block ${index}`);
        if (set) yield { kind: "sectors", offset: index * header.blockSize + first * SECTOR, data };
        first = end;
      }
    }
    // The trailing footer at the last 512-byte boundary below the size given: Content-Length decides where it is read.
    await skipForward(input, Math.floor((size - 1) / SECTOR) * SECTOR, "the trailing footer");
    readFooter(await input.read(FOOTER_SIZE, "the trailing footer"), "trailing footer");
  } finally {
    await input.close();
  }
}
