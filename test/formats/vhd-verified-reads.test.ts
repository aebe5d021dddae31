import { copyFile, open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  DiskType,
  type VhdBlockChecksums,
  type VhdByteSource,
  VhdChain,
  VhdError,
  VhdFile,
  verifyVhdFile,
} from "../../server/formats/vhd/index.js";
import { encodeFooter, newFooter } from "../../server/formats/vhd/footer.js";
import { checksumsOf, flipByte, writeUInt32At } from "./support/checksums.js";
import { randomWrites, writeDelta } from "./support/delta.js";
import { rawToVhd } from "./support/raw-disk.js";
import { SeededRandom } from "./support/seeded-random.js";
import { tempDir } from "./support/temp-dir.js";

const MiB = 1024 * 1024;
const BLOCK = 2 * MiB;
const STRIDE = 512 + BLOCK;
const BAT_AT = 2048;
const SIZE = 9 * MiB + 3 * 512;
const ADVICE = "the file is damaged; restore another restore point or run a verify";

async function caught(promise: Promise<unknown>): Promise<VhdError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VhdError);
  return error as VhdError;
}

/** The message a damaged block gives: file, block, byte range of the file, what to do. */
function damagedBlockMessage(path: string, block: number, offset: number, length = STRIDE): string {
  return `VHD_CHECKSUM_MISMATCH: block ${block} (bytes ${offset} to ${offset + length - 1} of the file) does not match its checksum: ${ADVICE} (${path}, block ${block}, at offset ${offset})`;
}

async function allocated(path: string): Promise<Array<{ index: number; offset: number }>> {
  const file = await VhdFile.open(path);
  const blocks = [];
  for (let index = 0; index < file.blockCount; index++)
    if (file.hasBlock(index)) blocks.push({ index, offset: file.blockOffset(index) as number });
  await file.close();
  return blocks;
}

/** A byte source over a local file that counts the reads, as a remote would see them. */
async function countingSource(path: string): Promise<VhdByteSource & { reads: number }> {
  const handle = await open(path, "r");
  const size = (await handle.stat()).size;
  const source = {
    size,
    reads: 0,
    async read(offset: number, length: number) {
      source.reads++;
      const buf = Buffer.alloc(length);
      await handle.read(buf, 0, length, offset);
      return buf;
    },
    close: () => handle.close(),
  };
  return source;
}

describe("verified reads: a VHD opened with its block checksums never returns a damaged byte", async () => {
  const dir = await tempDir();
  const random = new SeededRandom(41);
  const disk = Buffer.alloc(SIZE);
  randomWrites(disk, random, 25);
  await writeFile(join(dir, "base.raw"), disk);
  const fullUuid = "00000000-0000-4000-8000-000000000410";
  await rawToVhd(join(dir, "base.raw"), join(dir, "full.vhd"), SIZE, { uuid: fullUuid });
  const state0 = Buffer.from(disk);
  const touched = randomWrites(disk, random, 30);
  await writeDelta(join(dir, "delta.vhd"), disk, touched, { uuid: "00000000-0000-4000-8000-000000000411", parentUuid: fullUuid }, random);
  const state1 = Buffer.from(disk);
  const sums = { full: await checksumsOf(join(dir, "full.vhd")), delta: await checksumsOf(join(dir, "delta.vhd")) };
  let run = 0;
  /** Fresh copies of the two files for one test. */
  const copies = async () => {
    const n = run++;
    const full = join(dir, `full-${n}.vhd`);
    const delta = join(dir, `delta-${n}.vhd`);
    await copyFile(join(dir, "full.vhd"), full);
    await copyFile(join(dir, "delta.vhd"), delta);
    return { full, delta };
  };
  const fullBlocks = await allocated(join(dir, "full.vhd"));
  const deltaBlocks = await allocated(join(dir, "delta.vhd"));

  it("reads an intact chain verified, byte for byte, and verifyVhdFile finds nothing", async () => {
    const { full, delta } = await copies();
    const chain = await VhdChain.open([full, delta], { checksums: [sums.full, sums.delta] });
    try {
      expect((await chain.read(0, SIZE)).equals(state1)).toBe(true);
      expect((await chain.read(3 * MiB + 7, 5 * MiB)).equals(state1.subarray(3 * MiB + 7, 8 * MiB + 7))).toBe(true);
      for (const [file, blocks] of [
        [chain.files[0], fullBlocks],
        [chain.files[1], deltaBlocks],
      ] as const) {
        expect(await verifyVhdFile(file)).toEqual({ blocks: blocks.length, damaged: [] });
      }
    } finally {
      await chain.close();
    }
    const root = await VhdChain.open([full], { checksums: [sums.full] });
    expect((await root.read(0, SIZE)).equals(state0)).toBe(true);
    await root.close();
  });

  it("a flipped byte in a block's data: every read of that block fails naming the file, the block and its bytes; the other blocks read right", async () => {
    const { full } = await copies();
    const damaged = fullBlocks[1];
    await flipByte(full, damaged.offset + 512 + 1000);
    const expected = damagedBlockMessage(full, damaged.index, damaged.offset);
    const file = await VhdFile.open(full, { checksums: sums.full });
    try {
      expect((await caught(file.readBlock(damaged.index))).message).toBe(expected);
      // even a range that does not hold the flipped byte: the block is verified whole
      const target = Buffer.alloc(512);
      expect(await caught(file.readBlockRange(damaged.index, BLOCK - 512, 512, target, 0))).toMatchObject({
        code: "VHD_CHECKSUM_MISMATCH",
        file: full,
        structure: `block ${damaged.index}`,
        offset: damaged.offset,
      });
      expect(target.every((byte) => byte === 0)).toBe(true); // nothing unverified was copied out
      expect((await caught(file.readBitmap(damaged.index))).code).toBe("VHD_CHECKSUM_MISMATCH");
      const other = fullBlocks[0];
      expect((await file.readBlock(other.index)).equals(state0.subarray(other.index * BLOCK, (other.index + 1) * BLOCK))).toBe(true);
    } finally {
      await file.close();
    }
    const chain = await VhdChain.open([full], { checksums: [sums.full] });
    try {
      expect((await caught(chain.read(0, SIZE))).message).toBe(expected);
      expect((await caught(chain.read(damaged.index * BLOCK + BLOCK - 4096, 4096))).message).toBe(expected);
      const other = fullBlocks[0].index * BLOCK;
      expect((await chain.read(other, BLOCK)).equals(state0.subarray(other, other + BLOCK))).toBe(true);
    } finally {
      await chain.close();
    }
    // Unverified, the same file returns the damaged byte without a word: what the checksums are for.
    const unverified = await VhdChain.open([full]);
    expect((await unverified.read(0, SIZE)).equals(state0)).toBe(false);
    await unverified.close();
  });

  it("a flipped bit in a differencing block's bitmap: the chain fails rather than read the parent's sectors", async () => {
    const { full, delta } = await copies();
    const damaged = deltaBlocks[0];
    await flipByte(delta, damaged.offset + 5);
    const file = await VhdFile.open(delta, { checksums: sums.delta });
    expect((await caught(file.readBitmap(damaged.index))).message).toBe(damagedBlockMessage(delta, damaged.index, damaged.offset));
    await file.close();
    const chain = await VhdChain.open([full, delta], { checksums: [sums.full, sums.delta] });
    try {
      expect(await caught(chain.read(damaged.index * BLOCK, BLOCK))).toMatchObject({
        code: "VHD_CHECKSUM_MISMATCH",
        file: delta,
        structure: `block ${damaged.index}`,
      });
    } finally {
      await chain.close();
    }
  });

  it("a BAT entry set to unused is caught at open (unverified, the block would silently read as the parent's or zeros)", async () => {
    const { full, delta } = await copies();
    const dropped = deltaBlocks[deltaBlocks.length - 1];
    await writeUInt32At(delta, BAT_AT + dropped.index * 4, 0xffffffff);
    const error = await caught(VhdFile.open(delta, { checksums: sums.delta }));
    expect(error.message).toBe(
      `VHD_CHECKSUM_MISMATCH: BAT entry ${dropped.index} is unused, but the block checksums list block ${dropped.index}: ${ADVICE} (${delta}, BAT entry ${dropped.index}, at offset ${BAT_AT + dropped.index * 4})`,
    );
    expect((await caught(VhdChain.open([full, delta], { checksums: [sums.full, sums.delta] }))).code).toBe("VHD_CHECKSUM_MISMATCH");
  });

  it("two BAT entries swapped (each pointing at the other's block): the first read of either fails", async () => {
    const { full } = await copies();
    const [a, b] = fullBlocks;
    await writeUInt32At(full, BAT_AT + a.index * 4, b.offset / 512);
    await writeUInt32At(full, BAT_AT + b.index * 4, a.offset / 512);
    const chain = await VhdChain.open([full], { checksums: [sums.full] });
    try {
      expect((await caught(chain.read(a.index * BLOCK, 512))).message).toBe(damagedBlockMessage(full, a.index, b.offset));
      expect((await caught(chain.read(b.index * BLOCK, 512))).message).toBe(damagedBlockMessage(full, b.index, a.offset));
    } finally {
      await chain.close();
    }
  });

  it("a BAT entry pointing at another place in the file (not overlapping any block) fails its block's read", async () => {
    const { full } = await copies();
    const moved = fullBlocks[fullBlocks.length - 1];
    // Append a copy of the block's bytes with one byte changed, plus the footer, and point the entry there.
    const bytes = await readFile(full);
    const footer = bytes.subarray(bytes.length - 512);
    const relocated = Buffer.from(bytes.subarray(moved.offset, moved.offset + STRIDE));
    relocated[700] ^= 1;
    await writeFile(full, Buffer.concat([bytes.subarray(0, bytes.length - 512), relocated, footer]));
    const newOffset = bytes.length - 512;
    await writeUInt32At(full, BAT_AT + moved.index * 4, newOffset / 512);
    const file = await VhdFile.open(full, { checksums: sums.full });
    try {
      expect((await caught(file.readBlock(moved.index))).message).toBe(damagedBlockMessage(full, moved.index, newOffset));
    } finally {
      await file.close();
    }
  });

  it("checksums of another file, or of another block size, are refused at open", async () => {
    const { full, delta } = await copies();
    const wrongFile = await caught(VhdFile.open(full, { checksums: sums.delta }));
    expect(wrongFile).toMatchObject({ code: "VHD_CHECKSUM_MISMATCH", file: full, structure: "footer" });
    expect(wrongFile.message).toContain(`the block checksums describe VHD ${sums.delta.vhdUuid}, not this one (${sums.full.vhdUuid})`);
    const wrongSize = await caught(VhdFile.open(delta, { checksums: { ...sums.delta, blockSize: 4096 } }));
    expect(wrongSize).toMatchObject({ code: "VHD_CHECKSUM_MISMATCH", structure: "header" });
    const wrongCount = await caught(VhdFile.open(delta, { checksums: { ...sums.delta, entries: sums.delta.entries.slice(1) } }));
    expect(wrongCount).toMatchObject({ code: "VHD_CHECKSUM_MISMATCH", structure: "BAT" });
    await expect(VhdChain.open([full, delta], { checksums: [sums.full] })).rejects.toMatchObject({ code: "VHD_BAD_INPUT" });
  });

  it("a file read through a byte source (a remote) is verified the same way, and sequential reads read each block once", async () => {
    const { full } = await copies();
    const source = await countingSource(full);
    const file = await VhdFile.openSource("remote/full.vhd", source, { checksums: sums.full });
    try {
      const block = fullBlocks[0];
      const afterOpen = source.reads;
      const out = Buffer.alloc(BLOCK);
      for (let at = 0; at < BLOCK; at += 64 * 1024) await file.readBlockRange(block.index, at, 64 * 1024, out, at);
      expect(source.reads - afterOpen).toBe(1);
      expect(out.equals(state0.subarray(block.index * BLOCK, (block.index + 1) * BLOCK))).toBe(true);
    } finally {
      await file.close();
    }
    await flipByte(full, fullBlocks[2].offset + 512 + 3);
    const damaged = await VhdFile.openSource("remote/full.vhd", await countingSource(full), { checksums: sums.full });
    try {
      expect((await caught(damaged.readBlock(fullBlocks[2].index))).message).toBe(
        damagedBlockMessage("remote/full.vhd", fullBlocks[2].index, fullBlocks[2].offset),
      );
    } finally {
      await damaged.close();
    }
  });

  it("verifyVhdFile reads every block once and lists every damaged one, not just the first", async () => {
    const { full } = await copies();
    const first = fullBlocks[0];
    const last = fullBlocks[fullBlocks.length - 1];
    await flipByte(full, first.offset + 2); // bitmap
    await flipByte(full, last.offset + STRIDE - 1); // last data byte
    const file = await VhdFile.open(full, { checksums: sums.full });
    const progress: Array<[number, number]> = [];
    try {
      const result = await verifyVhdFile(file, { onProgress: (done, total) => void progress.push([done, total]) });
      expect(result.blocks).toBe(fullBlocks.length);
      expect(result.damaged).toEqual([
        { block: first.index, offset: first.offset, reason: damagedBlockMessage(full, first.index, first.offset) },
        { block: last.index, offset: last.offset, reason: damagedBlockMessage(full, last.index, last.offset) },
      ]);
      expect(progress).toEqual(fullBlocks.map((_, i) => [i + 1, fullBlocks.length]));
    } finally {
      await file.close();
    }
  });

  it("verifyVhdFile stops at an abort with the signal's reason, and refuses a file opened without checksums", async () => {
    const { full } = await copies();
    const file = await VhdFile.open(full, { checksums: sums.full });
    const controller = new AbortController();
    const reason = new Error("the verify was cancelled");
    try {
      const run = verifyVhdFile(file, { signal: controller.signal, onProgress: (done) => done === 1 && controller.abort(reason) });
      await expect(run).rejects.toBe(reason);
    } finally {
      await file.close();
    }
    const plain = await VhdFile.open(full);
    try {
      await expect(verifyVhdFile(plain)).rejects.toMatchObject({ code: "VHD_BAD_INPUT" });
    } finally {
      await plain.close();
    }
  });

  it("a fixed disk's checksums cover its data only, the last block short", async () => {
    const size = 5 * MiB + 1024;
    const raw = new SeededRandom(9).fill(Buffer.alloc(size));
    const path = join(dir, "fixed.vhd");
    await writeFile(path, Buffer.concat([raw, encodeFooter(newFooter({ currentSize: size, diskType: DiskType.Fixed, uuid: fullUuid }))]));
    const table: VhdBlockChecksums = await checksumsOf(path);
    expect(table.entries.length).toBe(3);
    const chain = await VhdChain.open([path], { checksums: [table] });
    expect((await chain.read(0, size)).equals(raw)).toBe(true);
    await chain.close();
    await flipByte(path, size - 1);
    const damaged = await VhdChain.open([path], { checksums: [table] });
    try {
      expect((await caught(damaged.read(size - 512, 512))).message).toBe(damagedBlockMessage(path, 2, 2 * BLOCK, size - 2 * BLOCK));
      expect((await damaged.read(0, 2 * BLOCK)).equals(raw.subarray(0, 2 * BLOCK))).toBe(true);
    } finally {
      await damaged.close();
    }
  });
});
