import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DiskType, VhdChain, VhdFile } from "../../server/formats/vhd/index.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { randomWrites, writeDelta } from "./support/delta.js";
import { rawToVhd, run } from "./support/raw-disk.js";
import { SeededRandom } from "./support/seeded-random.js";
import { tempDir } from "./support/temp-dir.js";

const MiB = 1024 * 1024;

function uuidFor(seed: number, step: number): string {
  const hex = (seed * 1000 + step).toString(16).padStart(12, "0");
  return `00000000-0000-4000-8000-${hex}`;
}

/** Builds a full disk plus `steps` deltas of random writes; returns the paths and the raw disk at each point in time. */
async function buildChain(
  dir: string,
  seed: number,
  size: number,
  steps: number,
): Promise<{ paths: string[]; states: Buffer[]; uuids: string[] }> {
  const random = new SeededRandom(seed);
  const disk = Buffer.alloc(size);
  randomWrites(disk, random, 20);
  const rawPath = join(dir, `s${seed}-0.raw`);
  await writeFile(rawPath, disk);
  const paths = [join(dir, `s${seed}-0.vhd`)];
  const uuids = [uuidFor(seed, 0)];
  await rawToVhd(rawPath, paths[0], size, { uuid: uuids[0] });
  const states = [Buffer.from(disk)];
  for (let step = 1; step <= steps; step++) {
    const touched = randomWrites(disk, random, 5 + random.int(40));
    paths.push(join(dir, `s${seed}-${step}.vhd`));
    uuids.push(uuidFor(seed, step));
    await writeDelta(
      paths[step],
      disk,
      touched,
      { uuid: uuids[step], parentUuid: uuids[step - 1], parentName: `s${seed}-${step - 1}.vhd` },
      random,
    );
    states.push(Buffer.from(disk));
  }
  return { paths, states, uuids };
}

/** Compares a chain with the expected bytes: whole, then at random unaligned ranges. */
async function expectChainEquals(chain: VhdChain, expected: Buffer, random: SeededRandom): Promise<void> {
  expect(chain.virtualSize).toBe(expected.length);
  expect((await chain.read(0, expected.length)).equals(expected)).toBe(true);
  for (let i = 0; i < 20; i++) {
    const offset = random.int(expected.length);
    const length = random.int(Math.min(expected.length - offset, 3 * MiB));
    expect((await chain.read(offset, length)).equals(expected.subarray(offset, offset + length))).toBe(true);
  }
}

describe("VHD chain view", async () => {
  const dir = await tempDir();

  for (const seed of [11, 12, 13]) {
    it(`reads a full plus its deltas as the raw disk at each point in time, byte for byte (seed ${seed})`, async () => {
      const size = 9 * MiB + 7 * 512;
      const { paths, states } = await buildChain(dir, seed, size, 4);
      const random = new SeededRandom(seed + 100);
      for (let point = 0; point < paths.length; point++) {
        const chain = await VhdChain.open(paths.slice(0, point + 1));
        try {
          await expectChainEquals(chain, states[point], random);
        } finally {
          await chain.close();
        }
      }
    });
  }

  it("lists the blocks allocated anywhere in the chain and reports unallocated ranges as zero", async () => {
    const size = 16 * MiB;
    const { paths, states } = await buildChain(dir, 21, size, 2);
    const chain = await VhdChain.open(paths);
    try {
      const allocated = chain.allocatedBlocks();
      for (let block = 0; block < 8; block++) {
        const bytes = states[2].subarray(block * 2 * MiB, (block + 1) * 2 * MiB);
        if (!allocated.includes(block)) expect(bytes.every((b) => b === 0)).toBe(true);
        expect(chain.isUnallocated(block * 2 * MiB, 2 * MiB)).toBe(!allocated.includes(block));
      }
    } finally {
      await chain.close();
    }
  });

  it("opens a single VhdFile and exposes footer, header and blocks", async () => {
    const { paths, uuids } = await buildChain(dir, 31, 4 * MiB, 1);
    const file = await VhdFile.open(paths[1]);
    try {
      expect(file.footer.diskType).toBe(DiskType.Differencing);
      expect(file.footer.uuid).toBe(uuids[1]);
      expect(file.header?.parentUuid).toBe(uuids[0]);
      const block = [0, 1].find((i) => file.hasBlock(i)) as number;
      expect((await file.readBlock(block)).length).toBe(2 * MiB);
      expect((await file.readBitmap(block)).some((b) => b !== 0)).toBe(true);
    } finally {
      await file.close();
    }
  });

  it("refuses a chain whose child does not name its parent's uuid", async () => {
    const a = await buildChain(dir, 41, 4 * MiB, 1);
    const b = await buildChain(dir, 42, 4 * MiB, 1);
    await expect(VhdChain.open([a.paths[0], b.paths[1]])).rejects.toThrow(
      `VHD_PARENT_MISMATCH: parent uuid ${b.uuids[0]} does not match ${a.paths[0]} (uuid ${a.uuids[0]}) (${b.paths[1]}, header, at offset 552)`,
    );
    await expect(VhdChain.open([a.paths[1]])).rejects.toMatchObject({ code: "VHD_PARENT_MISMATCH", structure: "footer", file: a.paths[1] });
  });

  it.skipIf(skipReasonForTools(["vhdiinfo"]))("writes differencing VHDs whose parent uuid and name vhdiinfo (libvhdi) reads", async () => {
    const { paths, uuids } = await buildChain(dir, 51, 6 * MiB, 2);
    const { stdout } = await run("vhdiinfo", [paths[2]]);
    expect(stdout).toMatch(/Disk type\s*: Differential/);
    expect(stdout).toMatch(new RegExp(`Identifier\\s*: ${uuids[2]}`));
    expect(stdout).toMatch(new RegExp(`Parent identifier\\s*: ${uuids[1]}`));
    expect(stdout).toMatch(/Parent filename\s*: s51-1\.vhd/);
  });

  it.skipIf(skipReasonForTools(["qemu-img"]))("reads VHDs made by qemu-img, dynamic and fixed", async () => {
    const size = 6 * MiB;
    const raw = join(dir, "q.raw");
    const disk = Buffer.alloc(size);
    randomWrites(disk, new SeededRandom(61), 30);
    await writeFile(raw, disk);
    for (const subformat of ["dynamic", "fixed"]) {
      const vhd = join(dir, `q-${subformat}.vhd`);
      await run("qemu-img", ["convert", "-f", "raw", "-O", "vpc", "-o", `subformat=${subformat},force_size=on`, raw, vhd]);
      const chain = await VhdChain.open([vhd]);
      try {
        expect((await chain.read(0, size)).equals(disk)).toBe(true);
      } finally {
        await chain.close();
      }
    }
  });
});
