import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VHD_BLOCK_SIZE, VhdChain, VhdError, VhdFile, createVhdStream, repairVhdFooter } from "../../server/formats/vhd/index.js";
import { tempDir } from "./support/temp-dir.js";

const MiB = 1024 * 1024;

async function caught(promise: Promise<unknown>): Promise<VhdError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VhdError);
  return error as VhdError;
}

describe("a damaged footer is read past with the other copy, and repaired from it", async () => {
  const dir = await tempDir();
  const uuid = "0b7a4bb4-5c0c-4f7e-9d55-33e4d0e5f3a1";
  const blocks = [0, 2].map((index) => ({ index, data: Buffer.alloc(VHD_BLOCK_SIZE, index + 7) }));
  const chunks: Buffer[] = [];
  for await (const chunk of createVhdStream({ virtualSize: 6 * MiB, uuid, blockIndexes: [0, 2], blocks })) chunks.push(chunk as Buffer);
  const good = Buffer.concat(chunks);
  const footerAt = good.length - 512;
  let n = 0;

  async function variant(mutate: (bytes: Buffer) => Buffer | void): Promise<string> {
    const bytes = Buffer.from(good);
    const path = join(dir, `v${n++}.vhd`);
    await writeFile(path, mutate(bytes) ?? bytes);
    return path;
  }

  async function expectReadsRight(path: string): Promise<void> {
    const chain = await VhdChain.open([path]);
    try {
      expect((await chain.read(0, 2 * MiB)).equals(blocks[0].data)).toBe(true);
      expect((await chain.read(4 * MiB, 2 * MiB)).equals(blocks[1].data)).toBe(true);
    } finally {
      await chain.close();
    }
  }

  it("an intact file: nothing is damaged, nothing is rewritten", async () => {
    const path = await variant(() => undefined);
    const file = await VhdFile.open(path);
    expect(file.footerDamaged).toBeUndefined();
    await file.close();
    expect(await repairVhdFooter(path)).toEqual({ repaired: undefined });
    expect((await readFile(path)).equals(good)).toBe(true);
  });

  for (const [label, damage] of [
    ["a bad checksum", (b: Buffer) => void (b[footerAt + 100] ^= 1)],
    ["a bad cookie", (b: Buffer) => void b.write("x", footerAt, "latin1")],
  ] as const) {
    it(`a trailing footer with ${label}: opened with the copy at 0 ("trailing"), repaired from it byte for byte`, async () => {
      const path = await variant(damage);
      const file = await VhdFile.open(path);
      expect(file.footerDamaged).toBe("trailing");
      expect(file.footer.uuid).toBe(uuid);
      await file.close();
      await expectReadsRight(path);
      expect(await repairVhdFooter(path)).toEqual({ repaired: "trailing" });
      expect((await readFile(path)).equals(good)).toBe(true);
      const repaired = await VhdFile.open(path);
      expect(repaired.footerDamaged).toBeUndefined();
      await repaired.close();
    });
  }

  it('a damaged copy at offset 0: read as always with the trailing footer ("copy"), repaired from it byte for byte', async () => {
    const path = await variant((b) => void (b[100] ^= 1));
    const file = await VhdFile.open(path);
    expect(file.footerDamaged).toBe("copy");
    await file.close();
    await expectReadsRight(path);
    expect(await repairVhdFooter(path)).toEqual({ repaired: "copy" });
    expect((await readFile(path)).equals(good)).toBe(true);
  });

  it("reports the damage on a file read through a byte source too", async () => {
    const bytes = Buffer.from(good);
    bytes[footerAt + 200] ^= 1;
    const source = {
      size: bytes.length,
      read: async (offset: number, length: number) => bytes.subarray(offset, offset + length),
      close: async () => {},
    };
    const file = await VhdFile.openSource("remote.vhd", source);
    expect(file.footerDamaged).toBe("trailing");
    expect((await file.readBlock(2)).equals(blocks[1].data)).toBe(true);
    await file.close();
  });

  it("both footers damaged: the file cannot be opened and the repair refuses, changing nothing", async () => {
    const path = await variant((b) => void ((b[footerAt + 100] ^= 1), (b[100] ^= 1)));
    expect((await caught(VhdFile.open(path))).code).toBe("VHD_BAD_CHECKSUM");
    const error = await caught(repairVhdFooter(path));
    expect(error).toMatchObject({ code: "VHD_BAD_CHECKSUM", file: path, structure: "footer", offset: footerAt });
    expect(error.message).toMatch(
      /the trailing footer is damaged \(.*\) and the copy at offset 0 cannot replace it \(damaged too, or no copy\): nothing to repair it from/,
    );
    const after = await readFile(path);
    expect(after.subarray(512, footerAt).equals(good.subarray(512, footerAt))).toBe(true);
  });

  it("a cut file still fails as a cut file (its end is missing, not damaged), and the repair refuses it", async () => {
    const path = await variant((b) => b.subarray(0, b.length - MiB));
    expect((await caught(VhdFile.open(path))).code).toBe("VHD_TRUNCATED");
    const error = await caught(repairVhdFooter(path));
    expect(error.code).toBe("VHD_TRUNCATED");
    expect(error.message).toMatch(/the file was cut, and a cut file cannot be repaired/);
    expect((await readFile(path)).length).toBe(good.length - MiB);
  });

  it("a file that lost exactly its trailing footer is cut too, not repaired", async () => {
    const path = await variant((b) => b.subarray(0, footerAt));
    expect((await caught(VhdFile.open(path))).code).toBe("VHD_TRUNCATED");
    expect((await caught(repairVhdFooter(path))).code).toBe("VHD_TRUNCATED");
  });
});
