/**
 * Block checksums: the SHA-256 of every allocated block of a VHD, kept in a small sidecar file beside it, so that a
 * flipped byte in a block is caught when the block is read instead of being restored silently. The byte layout is in
 * ../FORMAT.md, "Block checksums".
 *
 * Memory: a table is held whole: 32 bytes of hash per allocated block, i.e. 16 KiB per GiB of allocated data with
 * 2 MiB blocks. Each entry is also a small Buffer view (about 100 bytes of JS object) and each BAT entry an array slot,
 * so in practice about 64 KiB per GiB of allocated data: 128 MiB for a fully allocated 2 TiB disk.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { readableChunks } from "../readable-chunks.js";
import { uuidFromBytes, uuidToBytes, isUuid } from "./uuid.js";
import { VhdError } from "./vhd-error.js";
import { type VhdStreamPiecesItem, parseVhdStreamPieces } from "./vhd-stream-parser.js";

/** The checksums of one VHD file: one entry per BAT index. */
export interface VhdBlockChecksums {
  /** The footer uuid of the file described. */
  vhdUuid: string;
  blockSize: number;
  /**
   * Per BAT index: the SHA-256 (32 bytes) of the block exactly as stored in the file (bitmap bytes then data bytes; for a
   * fixed disk only the data, short for the last block of a disk that is not a multiple of the block size), or
   * undefined for an unallocated entry.
   */
  entries: Array<Buffer | undefined>;
}

export const BLOCK_CHECKSUMS_MAGIC = "CAIRNBCS";
export const BLOCK_CHECKSUMS_VERSION = 1;
/** Algorithm ids of the sidecar format. Only SHA-256 exists. */
export const ALGORITHM_SHA256 = 1;
export const HASH_SIZE = 32;
/** Bytes before the presence bitmap. */
const PREFIX_SIZE = 44;

/** The SHA-256 of a block as stored: its bitmap (absent for a fixed disk) followed by its data (whole, or in pieces). */
export function checksumOfBlock(bitmap: Buffer | undefined, data: Buffer | readonly Buffer[]): Buffer {
  const hash = createHash("sha256");
  if (bitmap) hash.update(bitmap);
  if (Buffer.isBuffer(data)) hash.update(data);
  else for (const piece of data) hash.update(piece);
  return hash.digest();
}

/**
 * Packs hashes into shared 64 KiB buffers, so that a table built block by block costs the same as a decoded one (a
 * view into one buffer per entry) rather than a buffer of its own per entry (twice the memory).
 */
export class HashPacker {
  private slab = Buffer.alloc(0);
  private used = 0;

  keep(hash: Buffer): Buffer {
    if (this.used + HASH_SIZE > this.slab.length) {
      this.slab = Buffer.alloc(2048 * HASH_SIZE);
      this.used = 0;
    }
    const kept = this.slab.subarray(this.used, this.used + HASH_SIZE);
    hash.copy(kept);
    this.used += HASH_SIZE;
    return kept;
  }
}

/**
 * The sidecar bytes of a table (see ../FORMAT.md, "Block checksums").
 * @throws VhdError VHD_BAD_INPUT for a table that cannot be written (bad uuid, a hash that is not 32 bytes)
 */
export function encodeBlockChecksums(sums: VhdBlockChecksums): Buffer {
  const where = { structure: "block checksums" };
  if (!isUuid(sums.vhdUuid)) throw new VhdError("VHD_BAD_INPUT", `vhdUuid ${JSON.stringify(sums.vhdUuid)} is not a uuid`, where);
  if (!Number.isInteger(sums.blockSize) || sums.blockSize <= 0 || sums.blockSize > 0xffffffff) {
    throw new VhdError("VHD_BAD_INPUT", `block size ${sums.blockSize} does not fit the format`, where);
  }
  const count = sums.entries.length;
  if (count > 0xffffffff) throw new VhdError("VHD_BAD_INPUT", `${count} entries do not fit the format`, where);
  let allocated = 0;
  sums.entries.forEach((entry, index) => {
    if (entry === undefined) return;
    if (entry.length !== HASH_SIZE)
      throw new VhdError("VHD_BAD_INPUT", `entry ${index} is ${entry.length} bytes, expected ${HASH_SIZE}`, where);
    allocated++;
  });
  const presenceSize = Math.ceil(count / 8);
  const bodySize = PREFIX_SIZE + presenceSize + allocated * HASH_SIZE;
  const out = Buffer.alloc(bodySize + HASH_SIZE);
  out.write(BLOCK_CHECKSUMS_MAGIC, 0, "latin1");
  out.writeUInt16BE(BLOCK_CHECKSUMS_VERSION, 8);
  out.writeUInt16BE(ALGORITHM_SHA256, 10);
  out.writeUInt16BE(HASH_SIZE, 12);
  out.writeUInt32BE(sums.blockSize, 16);
  out.writeUInt32BE(count, 20);
  out.writeUInt32BE(allocated, 24);
  uuidToBytes(sums.vhdUuid).copy(out, 28);
  let at = PREFIX_SIZE + presenceSize;
  sums.entries.forEach((entry, index) => {
    if (entry === undefined) return;
    out[PREFIX_SIZE + (index >> 3)] |= 0x80 >> (index & 7);
    entry.copy(out, at);
    at += HASH_SIZE;
  });
  createHash("sha256").update(out.subarray(0, bodySize)).digest().copy(out, bodySize);
  return out;
}

/**
 * Reads and checks a sidecar: magic, version, algorithm, length, trailer hash, presence bitmap. The hashes returned are
 * views of `bytes` (no copy).
 * @throws VhdError VHD_CHECKSUM_FILE naming `where.file` for anything wrong (cut, damaged, unknown version or algorithm)
 */
export function decodeBlockChecksums(bytes: Buffer, where: { file?: string } = {}): VhdBlockChecksums {
  const fail = (detail: string, offset?: number): never => {
    throw new VhdError("VHD_CHECKSUM_FILE", detail, { file: where.file, structure: "block checksums", offset });
  };
  if (bytes.length < PREFIX_SIZE + HASH_SIZE)
    fail(`the file is ${bytes.length} bytes, shorter than the ${PREFIX_SIZE + HASH_SIZE} of an empty table: it was cut`);
  const magic = bytes.toString("latin1", 0, 8);
  if (magic !== BLOCK_CHECKSUMS_MAGIC)
    fail(`expected magic "${BLOCK_CHECKSUMS_MAGIC}", found ${JSON.stringify(magic)}: not a block checksum file`, 0);
  const version = bytes.readUInt16BE(8);
  if (version !== BLOCK_CHECKSUMS_VERSION) fail(`unknown version ${version} (this Cairn reads version ${BLOCK_CHECKSUMS_VERSION})`, 8);
  const algorithm = bytes.readUInt16BE(10);
  const hashSize = bytes.readUInt16BE(12);
  if (algorithm !== ALGORITHM_SHA256 || hashSize !== HASH_SIZE)
    fail(`unknown algorithm ${algorithm} with ${hashSize}-byte hashes (only 1, SHA-256, 32 bytes)`, 10);
  const count = bytes.readUInt32BE(20);
  const allocated = bytes.readUInt32BE(24);
  const presenceSize = Math.ceil(count / 8);
  const bodySize = PREFIX_SIZE + presenceSize + allocated * HASH_SIZE;
  if (bytes.length !== bodySize + HASH_SIZE) {
    fail(
      `the file is ${bytes.length} bytes, but ${count} entries of which ${allocated} allocated take ${bodySize + HASH_SIZE}: it was cut or damaged`,
    );
  }
  const trailer = createHash("sha256").update(bytes.subarray(0, bodySize)).digest();
  if (!trailer.equals(bytes.subarray(bodySize)))
    fail("the SHA-256 of its content does not match its trailer: the file is damaged", bodySize);
  // From here the content is what was written: what follows only catches a writer's bug.
  const blockSize = bytes.readUInt32BE(16);
  if (blockSize < 512 || (blockSize & (blockSize - 1)) !== 0) fail(`block size ${blockSize} is not a power of two of at least 512`, 16);
  if (bytes.readUInt16BE(14) !== 0) fail("reserved bytes 14-15 are not zero", 14);
  const entries: Array<Buffer | undefined> = new Array(count).fill(undefined);
  let at = PREFIX_SIZE + presenceSize;
  let present = 0;
  for (let index = 0; index < presenceSize * 8; index++) {
    if ((bytes[PREFIX_SIZE + (index >> 3)] & (0x80 >> (index & 7))) === 0) continue;
    if (index >= count) fail(`the presence bitmap marks entry ${index}, past the ${count} entries`, PREFIX_SIZE + (index >> 3));
    if (++present > allocated) continue; // counted, to say how many below
    entries[index] = bytes.subarray(at, at + HASH_SIZE);
    at += HASH_SIZE;
  }
  if (present !== allocated) fail(`the presence bitmap marks ${present} entries but the header says ${allocated}`, PREFIX_SIZE);
  return { vhdUuid: uuidFromBytes(bytes.subarray(28, 44)), blockSize, entries };
}

/** What the tee of {@link checksumVhdStream} holds for its consumer at most (one chunk more while it waits). */
const TEE_BUFFER_BYTES = 1024 * 1024;

/**
 * Passes a streamed VHD through unchanged while computing its block checksums, without holding more than about one block
 * for the parser and {@link TEE_BUFFER_BYTES} for the consumer: the source is only read as fast as both the consumer of
 * `stream` and the parser (parseVhdStreamPieces) take it.
 *
 * - `checksums` resolves once the whole VHD is parsed, its closing footer checked; `stream` ends only after that, so when
 *   it has ended, `checksums` is settled.
 * - a malformed or cut VHD: `checksums` rejects with the parse error (a VhdError) and `stream` errors with it too, so that
 *   a copy of a VHD that cannot be described never looks complete.
 * - the source errors: `stream` errors with the source's error and `checksums` rejects with it.
 * - the consumer destroys `stream`: the source is destroyed and `checksums` rejects.
 * `checksums` never hangs and its rejection is never unhandled, even when the caller stops at the stream's error.
 */
export function checksumVhdStream(source: Readable, name?: string): { stream: Readable; checksums: Promise<VhdBlockChecksums> } {
  let consumerGone: Error | undefined;
  /** Set once the parse has settled `checksums`: a later destroy is the consumer's business only. */
  let finished = false;
  let demanded = false;
  let wakeProducer: (() => void) | undefined;
  const wake = () => {
    wakeProducer?.();
    wakeProducer = undefined;
  };
  const stream = new Readable({
    // Room for the chunks that arrive while the consumer (a file write on the thread pool) is busy, as its own 1 MiB
    // buffer has: with Node 20's 16 KiB each chunk waited for the consumer before the parser saw it. A 204 MiB delta
    // copied from the lab to a file with its checksums: 0.61-0.64 s before, 0.59-0.61 after (2 cores, alternated).
    highWaterMark: TEE_BUFFER_BYTES,
    read() {
      demanded = true;
      wake();
    },
    destroy(error, callback) {
      if (!finished) {
        consumerGone = error ?? new Error(`the copy of ${name ?? "the VHD stream"} was stopped before its end`);
        wake();
        // A read of the source may be pending: destroying it ends that read, so the parser stops.
        if (!source.destroyed) source.destroy();
      }
      callback(error);
    },
  });
  // The parser reports the source's errors through its iterator; this listener only keeps an error the source emits
  // after the parser has stopped (it was destroyed) from becoming an uncaught exception.
  source.on("error", () => {});

  /** Hands a chunk to the consumer, waiting while it has enough buffered (backpressure). */
  async function forward(chunk: Buffer): Promise<void> {
    if (consumerGone) throw consumerGone;
    demanded = false;
    if (stream.push(chunk) || demanded) return;
    await new Promise<void>((resolve) => (wakeProducer = resolve));
    if (consumerGone) throw consumerGone;
  }

  async function* teed(): AsyncGenerator<Buffer> {
    for await (const chunk of readableChunks(source)) {
      await forward(chunk);
      yield chunk;
    }
  }

  const checksums = collectChecksums(parseVhdStreamPieces(teed(), name), name).then(
    (sums) => {
      finished = true;
      stream.push(null);
      return sums;
    },
    (error: unknown) => {
      finished = true;
      const reason = consumerGone ?? (error as Error);
      stream.destroy(reason);
      throw reason;
    },
  );
  checksums.catch(() => {}); // the caller may stop at the stream's error and never look at `checksums`
  return { stream, checksums };
}

async function collectChecksums(items: AsyncIterable<VhdStreamPiecesItem>, name: string | undefined): Promise<VhdBlockChecksums> {
  let sums: VhdBlockChecksums | undefined;
  const packer = new HashPacker();
  for await (const item of items) {
    if (item.kind === "header") {
      sums = {
        vhdUuid: item.footer.uuid,
        blockSize: item.header.blockSize,
        entries: new Array(item.header.maxTableEntries).fill(undefined),
      };
    } else if (sums) {
      sums.entries[item.index] = packer.keep(checksumOfBlock(item.bitmap, item.pieces));
    }
  }
  if (!sums) throw new VhdError("VHD_TRUNCATED", "the stream ended before its header", { file: name, structure: "header" });
  return sums;
}
