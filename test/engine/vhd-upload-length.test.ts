/**
 * The exact length of a VHD stream from its footer, header and BAT (server/engine/replication/vhd-upload-length.ts): what
 * CR sends as Content-Length to `PUT /import_raw_vdi?format=vhd` (XAPI reads the closing footer at Content-Length - 512).
 */
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { VhdLayoutError, withVhdLength } from "../../server/engine/replication/vhd-upload-length.js";
import { createVhdStream, vhdStreamSize } from "../../server/formats/vhd/index.js";

const MiB = 1024 * 1024;

async function vhdBytes(virtualSize: number, blockIndexes: number[]): Promise<Buffer> {
  const stream = createVhdStream({
    virtualSize,
    blockIndexes,
    blocks: blockIndexes.map((index) => ({ index, data: Buffer.alloc(2 * MiB, index + 1) })),
  });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Hands out `bytes` in small pieces, as a network stream does. */
function trickle(bytes: Buffer, piece = 1000): Readable {
  return Readable.from(
    (function* () {
      for (let at = 0; at < bytes.length; at += piece) yield bytes.subarray(at, at + piece);
    })(),
    { objectMode: false },
  );
}

async function drain(stream: Readable): Promise<number> {
  let total = 0;
  for await (const chunk of stream) total += (chunk as Buffer).length;
  return total;
}

describe("withVhdLength", () => {
  for (const [what, size, blocks] of [
    ["no block (an unchanged disk)", 64 * MiB, []],
    ["some blocks", 64 * MiB, [0, 5, 31]],
    ["a 2 TiB disk with its last block", 2 * 1024 * 1024 * MiB, [1024 * 1024 - 1]],
  ] as const) {
    it(`gives the exact length of a VHD with ${what}, and passes every byte`, async () => {
      const bytes = size > 1024 * MiB ? undefined : await vhdBytes(size, [...blocks]);
      const expected = vhdStreamSize({ virtualSize: size, blockCount: blocks.length });
      if (bytes) expect(bytes.length).toBe(expected);
      const source =
        bytes === undefined
          ? createVhdStream({
              virtualSize: size,
              blockIndexes: [...blocks],
              blocks: blocks.map((index) => ({ index, data: Buffer.alloc(2 * MiB, 7) })),
            })
          : trickle(bytes);
      const sized = await withVhdLength(source, "disk xvda of test");
      expect(sized.length).toBe(expected);
      expect(await drain(sized)).toBe(expected);
    });
  }

  it("fails, naming the disk, when the stream is longer or shorter than its BAT says, or is not a VHD", async () => {
    const bytes = await vhdBytes(16 * MiB, [1, 2]);
    const longer = await withVhdLength(trickle(Buffer.concat([bytes, Buffer.alloc(512)])), "disk xvdb of db");
    await expect(drain(longer)).rejects.toThrow(VhdLayoutError);
    const shorter = await withVhdLength(trickle(bytes.subarray(0, -512)), "disk xvdb of db");
    await expect(drain(shorter)).rejects.toThrow(/disk xvdb of db ended after .* of the \d+ bytes its BAT announces/);
    await expect(withVhdLength(trickle(Buffer.alloc(0)), "disk xvdb of db")).rejects.toThrow(
      /disk xvdb of db ended after 0 bytes, before its footer/,
    );
    await expect(withVhdLength(trickle(Buffer.alloc(4096, 1)), "disk xvdb of db")).rejects.toThrow(/cookie/);
  });
});
