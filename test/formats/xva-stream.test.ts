import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pack } from "tar-stream";
import { describe, expect, it } from "vitest";
import { XVA_CHUNK_SIZE, XvaError, buildOvaXml, createXvaStream, readXva, xxh64Hex } from "../../server/formats/xva/index.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { run } from "./support/raw-disk.js";
import { SeededRandom } from "./support/seeded-random.js";
import { tempDir } from "./support/temp-dir.js";
import { bufferDisk, bytesOf, collect, readAll, sampleOva } from "./support/xva-helpers.js";

const MiB = XVA_CHUNK_SIZE;

function disk(size: number, seed: number, dataAt: number[]): Buffer {
  const bytes = Buffer.alloc(size);
  const random = new SeededRandom(seed);
  for (const at of dataAt) random.fill(bytes.subarray(at, Math.min(size, at + 300_000)));
  return bytes;
}

async function expectXvaError(source: Readable, code: string, message: RegExp): Promise<void> {
  let caught: unknown;
  try {
    for await (const _ of readXva(source, "bad.xva"));
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(XvaError);
  expect((caught as XvaError).code).toBe(code);
  expect((caught as XvaError).message).toMatch(message);
}

describe.skipIf(skipReasonForTools(["tar", "zstd"]))("XVA streams", async () => {
  const dir = await tempDir();
  const a = disk(5 * MiB + 4096, 1, [0, 3 * MiB + 17]);
  const b = disk(3 * MiB, 2, [MiB + 5]);
  const ova = sampleOva([
    { ref: "Ref:9", size: a.length },
    { ref: "Ref:10", size: b.length },
  ]);
  const sizes = { "Ref:9": a.length, "Ref:10": b.length };

  it("writes ova.xml first, disks in lexicographic ref order, each chunk followed by its .xxhash, zero chunks skipped", async () => {
    const bytes = await collect(createXvaStream({ ova, disks: [bufferDisk("Ref:9", a), bufferDisk("Ref:10", b)] }));
    expect(bytes.length % 512).toBe(0);
    expect(bytes.subarray(bytes.length - 1024).every((x) => x === 0)).toBe(true);
    const path = join(dir, "plain.xva");
    await writeFile(path, bytes);
    const listing = (await run("tar", ["-tf", path])).stdout.trim().split("\n");
    expect(listing).toEqual([
      "ova.xml",
      "Ref:10/00000000",
      "Ref:10/00000000.xxhash",
      "Ref:10/00000001",
      "Ref:10/00000001.xxhash",
      "Ref:10/00000002",
      "Ref:10/00000002.xxhash",
      "Ref:9/00000000",
      "Ref:9/00000000.xxhash",
      "Ref:9/00000003",
      "Ref:9/00000003.xxhash",
      "Ref:9/00000005",
      "Ref:9/00000005.xxhash",
    ]);
    const hash = (await run("tar", ["-xOf", path, "Ref:9/00000003.xxhash"])).stdout;
    expect(hash).toBe(await xxh64Hex(a.subarray(3 * MiB, 4 * MiB)));
    expect(hash).toMatch(/^[0-9A-F]{16}$/);
    expect((await run("tar", ["-xOf", path, "ova.xml"])).stdout).toBe(buildOvaXml(ova));
  });

  for (const compression of ["none", "gzip", "zstd"] as const) {
    it(`reads back what it wrote with compression ${compression}: the ova, then every disk byte for byte`, async () => {
      const stream = createXvaStream({ ova, disks: [bufferDisk("Ref:9", a), bufferDisk("Ref:10", b)], compression });
      const { items, disks } = await readAll(stream, sizes);
      expect(items[0].kind === "ova" && items[0].ova).toEqual(ova);
      expect(items.at(-1)).toEqual({ kind: "end" });
      expect(disks["Ref:9"].equals(a)).toBe(true);
      expect(disks["Ref:10"].equals(b)).toBe(true);
      const last = items.filter((item) => item.kind === "chunk" && item.ref === "Ref:9").at(-1);
      expect(last).toMatchObject({ counter: 5, offset: 5 * MiB });
    });
  }

  it("writes a zstd stream the zstd tool decompresses to a tar GNU tar lists", async () => {
    const path = join(dir, "z.xva");
    await writeFile(path, await collect(createXvaStream({ ova, disks: [bufferDisk("Ref:10", b)], compression: "zstd" })));
    const out = join(dir, "z.tar");
    await run("zstd", ["-d", "-q", "-f", path, "-o", out]);
    expect((await run("tar", ["-tf", out])).stdout.split("\n")[0]).toBe("ova.xml");
  });

  it("skips zero ranges the source reports through isZero without reading them", async () => {
    const reads: number[] = [];
    const source = {
      ...bufferDisk("Ref:9", a),
      read: async (offset: number, length: number) => (reads.push(offset), Buffer.from(a.subarray(offset, offset + length))),
      isZero: (offset: number) => offset === 3 * MiB,
    };
    const { disks } = await readAll(createXvaStream({ ova, disks: [source] }), { "Ref:9": a.length });
    expect(reads).not.toContain(3 * MiB);
    expect(disks["Ref:9"].subarray(3 * MiB, 4 * MiB).every((x) => x === 0)).toBe(true);
  });

  it("accepts the legacy SHA-1 .checksum entries written by another tar writer", async () => {
    const archive = pack();
    const chunk = Buffer.alloc(MiB, 3);
    archive.entry({ name: "ova.xml" }, buildOvaXml(sampleOva([{ ref: "Ref:4", size: MiB }])));
    archive.entry({ name: "Ref:4/00000000" }, chunk);
    archive.entry({ name: "Ref:4/00000000.checksum" }, createHash("sha1").update(chunk).digest("hex"));
    archive.finalize();
    const { disks } = await readAll(archive as unknown as Readable, { "Ref:4": MiB });
    expect(disks["Ref:4"].equals(chunk)).toBe(true);
  });

  describe("bad input", () => {
    const good = () => collect(createXvaStream({ ova, disks: [bufferDisk("Ref:10", b)] }));

    it("names the chunk whose data does not match its checksum", async () => {
      const bytes = await good();
      const at = bytes.indexOf("Ref:10/00000001") + 512 + 100;
      bytes[at] ^= 0xff;
      await expectXvaError(
        bytesOf(bytes),
        "XVA_BAD_CHECKSUM",
        /^XVA_BAD_CHECKSUM: bad\.xva: chunk Ref:10\/00000001: Ref:10\/00000001\.xxhash says [0-9A-F]{16}, the data hashes to [0-9A-F]{16} \(entry Ref:10\/00000001, at offset \d+\)$/,
      );
    });

    it("refuses an archive whose first entry is not ova.xml", async () => {
      const archive = pack();
      archive.entry({ name: "Ref:1/00000000" }, Buffer.alloc(10));
      archive.finalize();
      await expectXvaError(
        archive as unknown as Readable,
        "XVA_FIRST_NOT_OVA",
        /the first entry must be ova\.xml \(entry Ref:1\/00000000, at offset 0\)/,
      );
    });

    it("reports a stream cut in the middle of a chunk as truncated", async () => {
      const bytes = await good();
      await expectXvaError(
        bytesOf(bytes.subarray(0, 5000)),
        "XVA_TRUNCATED",
        /the stream ended after \d+ of 1048576 bytes \(entry Ref:10\/00000000/,
      );
    });

    it("reports a chunk without its checksum entry", async () => {
      const archive = pack();
      archive.entry({ name: "ova.xml" }, buildOvaXml(ova));
      archive.entry({ name: "Ref:10/00000000" }, Buffer.alloc(10));
      archive.entry({ name: "Ref:10/00000001" }, Buffer.alloc(10));
      archive.finalize();
      await expectXvaError(
        archive as unknown as Readable,
        "XVA_MISSING_CHECKSUM",
        /chunk Ref:10\/00000000 is followed by Ref:10\/00000001, not its checksum/,
      );
    });

    it("reports chunk counters that do not increase", async () => {
      const archive = pack();
      const chunk = Buffer.alloc(16, 1);
      const hash = await xxh64Hex(chunk);
      archive.entry({ name: "ova.xml" }, buildOvaXml(ova));
      for (const n of ["00000002", "00000001"]) {
        archive.entry({ name: `Ref:10/${n}` }, chunk);
        archive.entry({ name: `Ref:10/${n}.xxhash` }, hash);
      }
      archive.finalize();
      await expectXvaError(
        archive as unknown as Readable,
        "XVA_BAD_COUNTER",
        /chunk counter 1 does not increase after 2 \(entry Ref:10\/00000001/,
      );
    });

    it("reports a tar header whose checksum is wrong", async () => {
      const bytes = await good();
      bytes[512 * Math.ceil((512 + buildOvaXml(ova).length) / 512) + 3] ^= 1;
      await expectXvaError(bytesOf(bytes), "XVA_BAD_TAR", /XVA_BAD_TAR: header checksum \d+ does not match computed \d+ \(at offset \d+\)/);
    });

    it("reports corrupt zstd data as XVA_BAD_COMPRESSION", async () => {
      const bytes = await collect(createXvaStream({ ova, disks: [bufferDisk("Ref:10", b)], compression: "zstd" }));
      bytes.fill(0x55, 20, 200);
      await expectXvaError(
        bytesOf(bytes),
        "XVA_BAD_COMPRESSION",
        /XVA_BAD_COMPRESSION: bad\.xva: COMPRESSION_FAILED: zstd -d -c -q exited with 1/,
      );
    });

    it("refuses to write a disk that is not a VDI of ova.xml", () => {
      const stream = createXvaStream({ ova, disks: [bufferDisk("Ref:77", b)] });
      return expect(collect(stream)).rejects.toThrow("XVA_BAD_INPUT: disk Ref:77 is not a VDI object of ova.xml (entry Ref:77)");
    });
  });
});
