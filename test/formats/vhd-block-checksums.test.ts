import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import {
  VHD_BLOCK_SIZE,
  type VhdBlockChecksums,
  VhdError,
  checksumOfBlock,
  checksumVhdStream,
  createVhdStream,
  decodeBlockChecksums,
  encodeBlockChecksums,
} from "../../server/formats/vhd/index.js";
import { reachableBytes } from "../support/reachable-memory.js";
import { checksumsOf } from "./support/checksums.js";
import { randomWrites, writeDelta } from "./support/delta.js";
import { rawToVhd } from "./support/raw-disk.js";
import { SeededRandom } from "./support/seeded-random.js";
import { tempDir } from "./support/temp-dir.js";

const MiB = 1024 * 1024;
const UUID = "0b7a4bb4-5c0c-4f7e-9d55-33e4d0e5f3a1";

function sha(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** 11 entries (not a multiple of 8, so the presence bitmap has padding bits), 4 allocated. */
const sample: VhdBlockChecksums = {
  vhdUuid: UUID,
  blockSize: VHD_BLOCK_SIZE,
  entries: [sha("a"), undefined, undefined, sha("b"), undefined, undefined, undefined, undefined, sha("c"), undefined, sha("d")],
};

/** Recomputes the trailer after an edit, so that only the check under test can catch it. */
function resealed(bytes: Buffer): Buffer {
  const body = bytes.subarray(0, bytes.length - 32);
  return Buffer.concat([body, createHash("sha256").update(body).digest()]);
}

function decodeError(bytes: Buffer): VhdError {
  try {
    decodeBlockChecksums(bytes, { file: "x.vhd.blocksums" });
  } catch (error) {
    expect(error).toBeInstanceOf(VhdError);
    expect(error).toMatchObject({ code: "VHD_CHECKSUM_FILE", file: "x.vhd.blocksums", structure: "block checksums" });
    return error as VhdError;
  }
  throw new Error("decoded without error");
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function settled<T>(promise: Promise<T>): Promise<unknown> {
  return promise.then(
    () => "resolved",
    (error: unknown) => error,
  );
}

describe("block checksum sidecar format", () => {
  it("round-trips a table: uuid, block size, entry count, which entries are allocated and their hashes", () => {
    const bytes = encodeBlockChecksums(sample);
    // 44-byte prefix, 2 bytes of presence bitmap, 4 hashes, the trailer
    expect(bytes.length).toBe(44 + 2 + 4 * 32 + 32);
    expect(bytes.toString("latin1", 0, 8)).toBe("CAIRNBCS");
    expect(bytes.subarray(44, 46)).toEqual(Buffer.from([0b10010000, 0b10100000]));
    const back = decodeBlockChecksums(bytes);
    expect(back.vhdUuid).toBe(UUID);
    expect(back.blockSize).toBe(VHD_BLOCK_SIZE);
    expect(back.entries.length).toBe(11);
    back.entries.forEach((entry, i) => {
      const original = sample.entries[i];
      if (original === undefined) expect(entry).toBeUndefined();
      else expect(entry?.equals(original)).toBe(true);
    });
    expect(encodeBlockChecksums(back).equals(bytes)).toBe(true);
  });

  it("round-trips an empty table and one with no allocated block", () => {
    for (const entries of [[], new Array(20).fill(undefined)]) {
      const back = decodeBlockChecksums(encodeBlockChecksums({ vhdUuid: UUID, blockSize: 512, entries }));
      expect(back).toEqual({ vhdUuid: UUID, blockSize: 512, entries });
    }
  });

  it("lets a short script check it: the trailer is the SHA-256 of everything before it", () => {
    const bytes = encodeBlockChecksums(sample);
    expect(
      createHash("sha256")
        .update(bytes.subarray(0, bytes.length - 32))
        .digest()
        .equals(bytes.subarray(bytes.length - 32)),
    ).toBe(true);
  });

  it("refuses a table it cannot write", () => {
    expect(() => encodeBlockChecksums({ ...sample, vhdUuid: "nope" })).toThrow(/^VHD_BAD_INPUT: vhdUuid "nope" is not a uuid/);
    expect(() => encodeBlockChecksums({ ...sample, entries: [Buffer.alloc(31)] })).toThrow(
      /^VHD_BAD_INPUT: entry 0 is 31 bytes, expected 32/,
    );
  });

  const good = encodeBlockChecksums(sample);
  const corruptions: Array<[string, () => Buffer, RegExp]> = [
    ["a file cut to a few bytes", () => good.subarray(0, 10), /the file is 10 bytes, shorter than the 76 of an empty table: it was cut/],
    ["a file missing its last byte", () => good.subarray(0, good.length - 1), /it was cut or damaged/],
    ["a file with a byte too many", () => Buffer.concat([good, Buffer.alloc(1)]), /it was cut or damaged/],
    [
      "another file's magic",
      () => Buffer.concat([Buffer.from("conectix"), good.subarray(8)]),
      /expected magic "CAIRNBCS", found "conectix": not a block checksum file/,
    ],
    [
      "an unknown version",
      () => resealed(Buffer.from(good).fill(0, 8, 9).fill(2, 9, 10)),
      /unknown version 2 \(this Cairn reads version 1\)/,
    ],
    ["an unknown algorithm", () => resealed(Buffer.from(good).fill(7, 11, 12)), /unknown algorithm 7 with 32-byte hashes/],
    [
      "a flipped bit in a hash",
      () => Buffer.from(good).fill(good[100] ^ 1, 100, 101),
      /the SHA-256 of its content does not match its trailer: the file is damaged/,
    ],
    ["a flipped bit in the uuid", () => Buffer.from(good).fill(good[30] ^ 1, 30, 31), /does not match its trailer/],
    ["a damaged trailer", () => Buffer.from(good).fill(0, good.length - 1), /does not match its trailer/],
    [
      "a presence bitmap that disagrees with the count (resealed)",
      () => resealed(Buffer.from(good).fill(0b10010001, 44, 45)),
      /the presence bitmap marks 5 entries but the header says 4/,
    ],
    [
      "a presence bit past the last entry (resealed)",
      () => resealed(Buffer.from(good).fill(0b10100001, 45, 46)),
      /the presence bitmap marks entry 15, past the 11 entries/,
    ],
    [
      "a block size that is not a power of two (resealed)",
      () => resealed(Buffer.from(good).fill(3, 17, 18)),
      /block size 196608 is not a power of two of at least 512/,
    ],
  ];
  for (const [label, corrupt, message] of corruptions) {
    it(`refuses ${label} with VHD_CHECKSUM_FILE`, () => {
      const error = decodeError(corrupt());
      expect(error.message).toMatch(message);
      expect(error.message).toMatch(/\(x\.vhd\.blocksums, block checksums/);
    });
  }
});

describe("checksumVhdStream", async () => {
  const dir = await tempDir();
  const size = 9 * MiB + 5 * 512;
  const random = new SeededRandom(5);
  const disk = Buffer.alloc(size);
  randomWrites(disk, random, 12);
  await writeFile(join(dir, "base.raw"), disk);
  const full = join(dir, "full.vhd");
  await rawToVhd(join(dir, "base.raw"), full, size, { uuid: UUID });
  const delta = join(dir, "delta.vhd");
  const touched = randomWrites(disk, random, 20);
  await writeDelta(delta, disk, touched, { uuid: "00000000-0000-4000-8000-000000000001", parentUuid: UUID }, random);

  for (const [label, path] of [
    ["a dynamic VHD", full],
    ["a differencing VHD", delta],
  ] as const) {
    it(`passes ${label} through byte for byte and gives the checksums computed from the file afterwards`, async () => {
      const copy = `${path}.copy`;
      const { stream, checksums } = checksumVhdStream(createReadStream(path, { highWaterMark: 100_000 }), path);
      await pipeline(stream, createWriteStream(copy));
      expect((await readFile(copy)).equals(await readFile(path))).toBe(true);
      const fromStream = await checksums;
      const fromFile = await checksumsOf(copy);
      expect(encodeBlockChecksums(fromStream).equals(encodeBlockChecksums(fromFile))).toBe(true);
      expect(fromStream.entries.filter(Boolean).length).toBeGreaterThan(0);
    });
  }

  it("rejects a malformed stream with the parse error, and errors the stream with it", async () => {
    const { stream, checksums } = checksumVhdStream(Readable.from([Buffer.alloc(4096, 0x41)]), "junk.vhd");
    const streamError = await settled(collect(stream));
    const error = await settled(checksums);
    expect(error).toMatchObject({ code: "VHD_BAD_COOKIE", file: "junk.vhd", structure: "footer copy" });
    expect(streamError).toBe(error);
  });

  it("rejects a cut stream (VHD_TRUNCATED), and one whose closing footer is missing, after passing what came", async () => {
    const bytes = await readFile(full);
    for (const [cut, structure] of [
      [3 * MiB, "block"],
      [bytes.length - 512, "footer"],
    ] as const) {
      const { stream, checksums } = checksumVhdStream(Readable.from([bytes.subarray(0, cut)]), "cut.vhd");
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      const streamError = await new Promise((resolve) => stream.on("error", resolve));
      expect(await settled(checksums)).toBe(streamError);
      expect(streamError).toMatchObject({ code: "VHD_TRUNCATED", file: "cut.vhd" });
      expect((streamError as VhdError).structure).toContain(structure);
      expect(Buffer.concat(chunks).equals(bytes.subarray(0, Buffer.concat(chunks).length))).toBe(true);
    }
  });

  it("errors the stream with the source's error, and rejects the checksums", async () => {
    const failure = new Error("connection reset");
    const source = new Readable({ read() {} });
    const { stream, checksums } = checksumVhdStream(source, "x.vhd");
    source.push((await readFile(full)).subarray(0, 100_000));
    source.destroy(failure);
    expect(await settled(collect(stream))).toBe(failure);
    expect(await settled(checksums)).toBe(failure);
  });

  it("rejects the checksums and releases the source when the consumer stops reading (never hangs)", async () => {
    // A source that would stall forever after its first chunk: only destroying it ends the parser's read.
    const source = new Readable({ read() {} });
    source.push((await readFile(full)).subarray(0, 64 * 1024));
    const { stream, checksums } = checksumVhdStream(source, "x.vhd");
    const first = await new Promise<Buffer>((resolve) => stream.once("data", resolve));
    expect(first.length).toBeGreaterThan(0);
    stream.destroy();
    const error = await settled(checksums);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/stopped before its end/);
    expect(source.destroyed).toBe(true);
  });

  it("holds at most a few blocks while 256 MiB of VHD pass through a slow consumer (backpressure, flat memory)", async () => {
    const blocks = 128;
    const virtualSize = blocks * VHD_BLOCK_SIZE;
    const stride = 512 + VHD_BLOCK_SIZE;
    let produced = 0;
    let consumed = 0;
    let mostInFlight = 0;
    async function* counted(): AsyncGenerator<Buffer> {
      const vhd = createVhdStream({
        virtualSize,
        uuid: UUID,
        blockIndexes: Array.from({ length: blocks }, (_, i) => i),
        blocks: (function* () {
          for (let index = 0; index < blocks; index++) yield { index, data: Buffer.alloc(VHD_BLOCK_SIZE, index) };
        })(),
      });
      for await (const chunk of vhd) {
        produced += (chunk as Buffer).length;
        mostInFlight = Math.max(mostInFlight, produced - consumed);
        yield chunk as Buffer;
      }
    }
    // What stays reachable, not what the collector has yet to free (see test/support/reachable-memory.ts), every 32 chunks.
    const retained = reachableBytes;
    const before = retained();
    let mostMemory = 0;
    let chunks = 0;
    const { stream, checksums } = checksumVhdStream(Readable.from(counted(), { objectMode: false }), "big.vhd");
    for await (const chunk of stream) {
      consumed += (chunk as Buffer).length;
      if (++chunks % 32 === 0) mostMemory = Math.max(mostMemory, retained() - before);
      await new Promise((resolve) => setImmediate(resolve)); // a consumer slower than the producer
    }
    const sums = await checksums;
    expect(consumed).toBe(virtualSize + blocks * 512 + 2048 + 512 + 512);
    // bytes taken from the source but not yet handed on: a couple of blocks in the stream buffers, never the stream
    expect(mostInFlight).toBeLessThanOrEqual(3 * stride);
    // nothing accumulates: what stays reachable is a few blocks, not the 256 MiB that passed
    expect(mostMemory).toBeLessThan(32 * MiB);
    const fullBitmap = Buffer.alloc(512, 0xff);
    expect(sums.entries.length).toBe(blocks);
    for (const index of [0, 1, 77, 127])
      expect(sums.entries[index]?.equals(checksumOfBlock(fullBitmap, Buffer.alloc(VHD_BLOCK_SIZE, index)))).toBe(true);
  });
});
