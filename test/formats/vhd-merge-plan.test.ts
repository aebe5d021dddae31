import { copyFile, mkdir, open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  VhdChain,
  VhdFile,
  type VhdByteSource,
  decodeBlockChecksums,
  encodeBlockChecksums,
  mergeVhdChain,
} from "../../server/formats/vhd/index.js";
import { composedMergeTable, planComposedMerge } from "../../server/formats/vhd/merge-plan.js";
import { checksumsOf, flipByte, writeSidecar } from "./support/checksums.js";
import { randomWrites, writeDelta } from "./support/delta.js";
import { rawToVhd } from "./support/raw-disk.js";
import { SeededRandom } from "./support/seeded-random.js";
import { tempDir } from "./support/temp-dir.js";

const MiB = 1024 * 1024;
const SIZE = 23 * MiB + 512 * 5;

/** A local file read only through random access, as a remote's would be. */
async function sourceOf(path: string): Promise<VhdByteSource> {
  const handle = await open(path, "r");
  const { size } = await handle.stat();
  return {
    size,
    read: async (offset, length) => {
      const bytes = Buffer.alloc(length);
      await handle.read(bytes, 0, length, offset);
      return bytes;
    },
    close: () => handle.close(),
  };
}

/** The merged file the plan describes, assembled by reading the parent's ranges and making the new bytes in order. */
async function assemble(
  parentPath: string,
  childPath: string,
  options: { checksums?: boolean } = {},
): Promise<{ bytes: Buffer; table?: Buffer }> {
  const parentTable = options.checksums ? decodeBlockChecksums(await readFile(`${parentPath}.blocksums`)) : undefined;
  const childTable = options.checksums ? decodeBlockChecksums(await readFile(`${childPath}.blocksums`)) : undefined;
  const parent = await VhdFile.openSource(parentPath, await sourceOf(parentPath));
  const child = await VhdFile.openSource(childPath, await sourceOf(childPath), { checksums: childTable });
  const raw = await readFile(parentPath);
  try {
    const plan = planComposedMerge(parent, child, { parentTable });
    const pieces: Buffer[] = [];
    for (const segment of plan.segments) {
      if (segment.kind === "parent") pieces.push(raw.subarray(segment.start, segment.end));
      else {
        const bytes = await segment.bytes();
        expect(bytes.length).toBe(segment.length);
        pieces.push(bytes);
      }
    }
    const bytes = Buffer.concat(pieces);
    expect(bytes.length).toBe(plan.size);
    return { bytes, table: parentTable ? encodeBlockChecksums(composedMergeTable(plan, parentTable)) : undefined };
  } finally {
    await parent.close();
    await child.close();
  }
}

async function readChain(paths: string[]): Promise<Buffer> {
  const chain = await VhdChain.open(paths);
  try {
    return await chain.read(0, chain.virtualSize);
  } finally {
    await chain.close();
  }
}

describe("VHD merge planned as a new file (merge-plan.ts)", async () => {
  const dir = await tempDir();
  const random = new SeededRandom(11);
  const disk = Buffer.alloc(SIZE);
  randomWrites(disk, random, 9);
  await writeFile(join(dir, "base.raw"), disk);
  const names = ["d0.vhd", "d1.vhd", "d2.vhd", "d3.vhd"];
  const uuid = (n: number) => `00000000-0000-4000-8000-${String(110 + n).padStart(12, "0")}`;
  await rawToVhd(join(dir, "base.raw"), join(dir, names[0]), SIZE, { uuid: uuid(0) });
  const states = [Buffer.from(disk)];
  for (let n = 1; n < names.length; n++) {
    // Writes past the parent's allocated blocks too, so that the merge both combines and appends blocks.
    const touched = randomWrites(disk, random, 6 + random.int(12));
    await writeDelta(join(dir, names[n]), disk, touched, { uuid: uuid(n), parentUuid: uuid(n - 1) }, random);
    states.push(Buffer.from(disk));
  }
  for (const name of names) await writeSidecar(join(dir, name));
  let run = 0;
  const copies = async () => {
    const to = join(dir, `run-${run++}`);
    await mkdir(to);
    await Promise.all(names.flatMap((name) => [name, `${name}.blocksums`]).map((name) => copyFile(join(dir, name), join(to, name))));
    return names.map((name) => join(to, name));
  };

  for (const [parentIndex, label] of [
    [0, "a full parent"],
    [1, "a differencing parent"],
  ] as const) {
    it(`gives byte for byte the file the in-place merge leaves, and the same block checksums, merging into ${label}`, async () => {
      const inPlace = await copies();
      const planned = await copies();
      const [parent, child] = [inPlace[parentIndex], inPlace[parentIndex + 1]];
      const result = await mergeVhdChain({ parent, child, parentChecksums: `${parent}.blocksums`, childChecksums: `${child}.blocksums` });
      expect(result.checksumsWritten).toBe(true);
      const { bytes, table } = await assemble(planned[parentIndex], planned[parentIndex + 1], { checksums: true });
      const expected = await readFile(child);
      expect(bytes.length).toBe(expected.length);
      expect(bytes.equals(expected)).toBe(true);
      expect(table?.equals(await readFile(`${child}.blocksums`))).toBe(true);
      // The assembled file read as the chain would: the same disk at every later point, checked against its table.
      await writeFile(planned[parentIndex + 1], bytes);
      expect((await checksumsOf(planned[parentIndex + 1])).entries).toEqual(decodeBlockChecksums(table as Buffer).entries);
      const after = planned.filter((_, i) => i !== parentIndex);
      expect((await readChain(after)).equals(states[3])).toBe(true);
      expect((await readChain(after.slice(0, parentIndex + 1))).equals(states[parentIndex + 1])).toBe(true);
    });
  }

  it("copies most of the parent unchanged: the new bytes are the child's blocks, a few BAT sectors and two footers", async () => {
    const [d0, d1] = await copies();
    const parent = await VhdFile.open(d0);
    const child = await VhdFile.open(d1);
    try {
      const plan = planComposedMerge(parent, child);
      const stride = parent.bitmapSize + parent.blockSize;
      const made = plan.segments.filter((segment) => segment.kind === "new").reduce((sum, segment) => sum + segment.length, 0);
      expect(plan.childBlocks.length).toBeGreaterThan(0);
      expect(plan.newBlocks).toBeGreaterThan(0);
      expect(made).toBeLessThanOrEqual(plan.childBlocks.length * stride + 1024 + 512 * plan.newBlocks);
      expect(plan.segments.filter((segment) => segment.kind === "new" && segment.block !== undefined)).toHaveLength(
        plan.childBlocks.length,
      );
    } finally {
      await parent.close();
      await child.close();
    }
  });

  it("verifies the child's blocks and the parent's combined blocks against their tables while making the bytes", async () => {
    const [d0, d1] = await copies();
    const child = await VhdFile.open(d1);
    const first = child.blockOffset(child.bat.findIndex((entry, index) => child.hasBlock(index) && entry !== 0xffffffff)) as number;
    await child.close();
    await flipByte(d1, first + 4096);
    await expect(assemble(d0, d1, { checksums: true })).rejects.toMatchObject({ code: "VHD_CHECKSUM_MISMATCH" });
  });

  it("refuses a block that differs from the one an interrupted attempt made (its merged table)", async () => {
    const [d0, d1] = await copies();
    const parent = await VhdFile.open(d0);
    const child = await VhdFile.open(d1);
    try {
      const parentTable = decodeBlockChecksums(await readFile(`${d0}.blocksums`));
      const wrong = { ...parentTable, entries: parentTable.entries.map(() => Buffer.alloc(32)) };
      const plan = planComposedMerge(parent, child, { expected: wrong });
      const firstBlock = plan.segments.find((segment) => segment.kind === "new" && segment.block !== undefined);
      if (firstBlock?.kind !== "new") throw new Error("no block segment");
      await expect(firstBlock.bytes()).rejects.toMatchObject({ code: "VHD_CHECKSUM_MISMATCH" });
    } finally {
      await parent.close();
      await child.close();
    }
  });

  it("refuses a child that is not the parent's", async () => {
    const [d0, , d2] = await copies();
    const parent = await VhdFile.open(d0);
    const child = await VhdFile.open(d2);
    try {
      expect(() => planComposedMerge(parent, child)).toThrow(expect.objectContaining({ code: "VHD_PARENT_MISMATCH" }));
    } finally {
      await parent.close();
      await child.close();
    }
  });
});
