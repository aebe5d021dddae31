import { createReadStream } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import {
  VHD_BLOCK_SIZE,
  VhdError,
  VhdFile,
  createVhdStream,
  decodeHeader,
  encodeHeader,
  parseVhdStream,
} from "../../server/formats/vhd/index.js";
import { tempDir } from "./support/temp-dir.js";

const MiB = 1024 * 1024;
const BAT_AT = 2048;

async function caught(promise: Promise<unknown>): Promise<VhdError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VhdError);
  return error as VhdError;
}

async function drain(source: AsyncIterable<Buffer> | Readable, name: string): Promise<void> {
  for await (const _ of parseVhdStream(source, name));
}

describe("bad VHD input raises a typed error naming the file, the structure and the offset", async () => {
  const dir = await tempDir();
  const blocks = [0, 1].map((index) => ({ index, data: Buffer.alloc(VHD_BLOCK_SIZE, index + 1) }));
  const chunks: Buffer[] = [];
  for await (const chunk of createVhdStream({ virtualSize: 4 * MiB, blockIndexes: [0, 1], blocks })) chunks.push(chunk as Buffer);
  const good = Buffer.concat(chunks);
  const footerAt = good.length - 512;

  async function variant(name: string, mutate: (bytes: Buffer) => Buffer | void): Promise<string> {
    const bytes = Buffer.from(good);
    const path = join(dir, name);
    await writeFile(path, mutate(bytes) ?? bytes);
    return path;
  }

  // With only the trailing footer damaged a file is read with its copy at 0 (vhd-footer-repair.test.ts): both are here.
  it("a wrong footer cookie", async () => {
    const path = await variant("cookie.vhd", (b) => void (b.write("x", footerAt, "latin1"), b.write("x", 0, "latin1")));
    const error = await caught(VhdFile.open(path));
    expect(error).toMatchObject({ code: "VHD_BAD_COOKIE", file: path, structure: "footer", offset: footerAt });
    expect(error.message).toBe(`VHD_BAD_COOKIE: expected cookie "conectix", found "xonectix" (${path}, footer, at offset ${footerAt})`);
  });

  it("a wrong header cookie", async () => {
    const path = await variant("hcookie.vhd", (b) => void b.write("XX", 512, "latin1"));
    expect((await caught(VhdFile.open(path))).message).toBe(
      `VHD_BAD_COOKIE: expected cookie "cxsparse", found "XXsparse" (${path}, header, at offset 512)`,
    );
  });

  it("a bad footer checksum", async () => {
    const path = await variant("fsum.vhd", (b) => void ((b[footerAt + 100] = 1), (b[100] = 1)));
    const error = await caught(VhdFile.open(path));
    expect(error.message).toMatch(
      new RegExp(
        `^VHD_BAD_CHECKSUM: checksum 0x[0-9a-f]{8} does not match computed 0x[0-9a-f]{8} \\(${path}, footer, at offset ${footerAt}\\)$`,
      ),
    );
  });

  it("a bad header checksum", async () => {
    const path = await variant("hsum.vhd", (b) => void (b[512 + 900] = 1));
    expect(await caught(VhdFile.open(path))).toMatchObject({ code: "VHD_BAD_CHECKSUM", structure: "header", offset: 512 });
  });

  it("a truncated file", async () => {
    const path = await variant("cut.vhd", (b) => b.subarray(0, b.length - MiB));
    const error = await caught(VhdFile.open(path));
    expect(error.message).toBe(
      `VHD_TRUNCATED: the file is ${good.length - MiB} bytes but its footer copy, header and BAT need ${good.length}: the file was cut (${path}, footer, at offset ${good.length - MiB - 512})`,
    );
  });

  it("a BAT entry pointing past the end", async () => {
    const path = await variant("bat.vhd", (b) => void b.writeUInt32BE(0x00100000, BAT_AT + 4));
    const error = await caught(VhdFile.open(path));
    expect(error.message).toBe(
      `VHD_BAT_OUT_OF_RANGE: block 1 (2097664 bytes) runs past the end of the data (${footerAt}) (${path}, BAT entry 1, at offset ${0x00100000 * 512})`,
    );
  });

  it("a block whose bitmap and data do not fit before the next block", async () => {
    const path = await variant("overlap.vhd", (b) => void b.writeUInt32BE(b.readUInt32BE(BAT_AT) + 8, BAT_AT + 4));
    const error = await caught(VhdFile.open(path));
    expect(error.code).toBe("VHD_BITMAP_MISMATCH");
    expect(error.message).toMatch(
      /^VHD_BITMAP_MISMATCH: block 1 overlaps block 0: a 512-byte bitmap plus 2097152 data bytes do not fit between them \(.*overlap\.vhd, BAT entry 1, at offset \d+\)$/,
    );
  });

  it("a block size that is not a power of two", async () => {
    const path = await variant("bsize.vhd", (b) => {
      const header = decodeHeader(b.subarray(512, 1536), {});
      encodeHeader({ ...header, blockSize: 3 * MiB }).copy(b, 512);
    });
    expect((await caught(VhdFile.open(path))).message).toBe(
      `VHD_BAD_FIELD: block size 3145728 is not a power of two of at least 512 (${path}, header, at offset 512)`,
    );
  });

  it("a stream cut in the middle of a block", async () => {
    const error = await caught(drain(Readable.from([good.subarray(0, 3 * MiB)]), "cut-stream.vhd"));
    expect(error.message).toBe(
      "VHD_TRUNCATED: the stream ended after 1044992 of 2097152 bytes (cut-stream.vhd, block 1 data, at offset 2100736)",
    );
  });

  it("a stream whose BAT points past its end", async () => {
    const path = await variant("bat-stream.vhd", (b) => void b.writeUInt32BE(0x00100000, BAT_AT + 4));
    const error = await caught(drain(createReadStream(path), "bat-stream.vhd"));
    expect(error.message).toBe(
      `VHD_BAT_OUT_OF_RANGE: block 1 points past the end of the stream (${good.length} bytes) (bat-stream.vhd, BAT entry 1, at offset ${0x00100000 * 512})`,
    );
  });

  it("a stream that does not start with a footer", async () => {
    const error = await caught(drain(Readable.from([Buffer.alloc(4096, 0x41)]), "junk.vhd"));
    expect(error.message).toBe('VHD_BAD_COOKIE: expected cookie "conectix", found "AAAAAAAA" (junk.vhd, footer copy, at offset 0)');
  });

  it("a stream whose closing footer is missing", async () => {
    const error = await caught(drain(Readable.from([good.subarray(0, footerAt)]), "nofooter.vhd"));
    expect(error).toMatchObject({ code: "VHD_TRUNCATED", structure: "footer" });
  });

  it("a writer given a block of the wrong size or out of order", async () => {
    const short = createVhdStream({ virtualSize: 4 * MiB, blockIndexes: [0], blocks: [{ index: 0, data: Buffer.alloc(100) }] });
    expect((await caught(drain(short, "w"))).message).toBe("VHD_BITMAP_MISMATCH: block data is 100 bytes, expected 2097152 (block 0)");
    const wrong = createVhdStream({ virtualSize: 4 * MiB, blockIndexes: [0], blocks: [{ index: 1, data: Buffer.alloc(VHD_BLOCK_SIZE) }] });
    expect((await caught(drain(wrong, "w"))).message).toBe(
      "VHD_BAD_INPUT: blocks yielded index 1 where blockIndexes announced 0 (block 1)",
    );
    const odd = createVhdStream({ virtualSize: 1000, blockIndexes: [], blocks: [] });
    expect((await caught(drain(odd, "w"))).message).toBe(
      "VHD_BAD_INPUT: virtualSize 1000 must be a non-negative multiple of 512 (write options)",
    );
  });

  it("keeps the good file readable (the variants above are the only difference)", async () => {
    const path = await variant("good.vhd", () => undefined);
    const file = await VhdFile.open(path);
    expect((await file.readBlock(1)).equals(blocks[1].data)).toBe(true);
    await file.close();
    expect((await readFile(path)).length).toBe(good.length);
  });
});
