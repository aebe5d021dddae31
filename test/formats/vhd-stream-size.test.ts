/**
 * The size of a streamed VHD, known from its head: what a delta transfer's progress is measured against. Checked against
 * the bytes that really go by, for VHDs made by Cairn's writer and by qemu-img (qemu-io writing into it), in awkward chunk
 * sizes; a stream that is no VHD passes through untouched with no size.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { VHD_BLOCK_SIZE, createVhdStream } from "../../server/formats/vhd/index.js";
import { type VhdStreamSize, measureVhdStream } from "../../server/formats/vhd/vhd-stream-size.js";
import { skipReasonForTools } from "../support/system-tools.js";

const run = promisify(execFile);

function rechunk(source: Buffer, size: number): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < source.length; i += size) yield source.subarray(i, i + size);
    })(),
  );
}

/** Passes `bytes` through the tap in chunks of `size`: what came out, and the sizes it reported. */
async function measure(bytes: Buffer, size: number): Promise<{ out: Buffer; reported: VhdStreamSize[] }> {
  const reported: VhdStreamSize[] = [];
  const out = await buffer(rechunk(bytes, size).pipe(measureVhdStream((found) => reported.push(found))));
  return { out, reported };
}

describe("the size of a streamed VHD, from its head", () => {
  it("is the length of a dynamic or differencing VHD written by Cairn, whatever the chunking", async () => {
    for (const parent of [undefined, { uuid: "11111111-2222-3333-4444-555555555555", name: "parent.vhd" }]) {
      const blockIndexes = [0, 5, 17];
      const written = await buffer(
        createVhdStream({
          virtualSize: 32 * VHD_BLOCK_SIZE,
          parent,
          blockIndexes,
          blocks: blockIndexes.map((index) => ({ index, data: Buffer.alloc(VHD_BLOCK_SIZE, index + 1) })),
        }),
      );
      for (const size of [1000, 1537, 65536, written.length]) {
        const { out, reported } = await measure(written, size);
        expect(out.equals(written)).toBe(true);
        expect(reported).toEqual([{ streamBytes: written.length, allocatedBlocks: 3, blockSize: VHD_BLOCK_SIZE }]);
      }
    }
  });

  it("is the length of an empty VHD: its head and footer", async () => {
    const written = await buffer(createVhdStream({ virtualSize: 8 * VHD_BLOCK_SIZE, blockIndexes: [], blocks: [] }));
    const { reported } = await measure(written, 4096);
    expect(reported).toEqual([{ streamBytes: written.length, allocatedBlocks: 0, blockSize: VHD_BLOCK_SIZE }]);
  });

  it.skipIf(skipReasonForTools(["qemu-img", "qemu-io"]))(
    "is the length of a VHD made by qemu-img with data written by qemu-io",
    async () => {
      const dir = await mkdtemp(join(tmpdir(), "cairn-vhd-size-"));
      try {
        const file = join(dir, "disk.vhd");
        await run("qemu-img", ["create", "-q", "-f", "vpc", "-o", "subformat=dynamic", file, "64M"]);
        await run("qemu-io", ["-f", "vpc", "-c", "write -P 0x5a 0 3M", "-c", "write -P 0x11 20M 1M", file]);
        const bytes = await readFile(file);
        const { out, reported } = await measure(bytes, 65536);
        expect(out.equals(bytes)).toBe(true);
        expect(reported).toEqual([{ streamBytes: bytes.length, allocatedBlocks: 3, blockSize: VHD_BLOCK_SIZE }]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it("lets a stream that is no VHD through untouched, with no size", async () => {
    const bytes = Buffer.alloc(3 * 65536, 0x42);
    const { out, reported } = await measure(bytes, 1000);
    expect(out.equals(bytes)).toBe(true);
    expect(reported).toEqual([]);
  });
});
