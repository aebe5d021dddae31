import { access, copyFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DiskType, type MergeStep, VhdChain, VhdFile, mergeVhdChain } from "../../server/formats/vhd/index.js";
import { randomWrites, writeDelta } from "./support/delta.js";
import { rawToVhd } from "./support/raw-disk.js";
import { SeededRandom } from "./support/seeded-random.js";
import { tempDir } from "./support/temp-dir.js";

const MiB = 1024 * 1024;
const SIZE = 11 * MiB + 512 * 3;

interface Fixture {
  names: string[];
  states: Buffer[];
}

/** A full and three deltas, written once; each test works on a copy. */
async function buildFixture(dir: string, seed: number): Promise<Fixture> {
  const random = new SeededRandom(seed);
  const disk = Buffer.alloc(SIZE);
  randomWrites(disk, random, 6);
  const raw = join(dir, "base.raw");
  await writeFile(raw, disk);
  const names = ["d0.vhd", "d1.vhd", "d2.vhd", "d3.vhd"];
  const uuid = (n: number) => `00000000-0000-4000-8000-${String(seed * 10 + n).padStart(12, "0")}`;
  await rawToVhd(raw, join(dir, names[0]), SIZE, { uuid: uuid(0) });
  const states = [Buffer.from(disk)];
  for (let n = 1; n < names.length; n++) {
    const touched = randomWrites(disk, random, 10 + random.int(30));
    await writeDelta(join(dir, names[n]), disk, touched, { uuid: uuid(n), parentUuid: uuid(n - 1) }, random);
    states.push(Buffer.from(disk));
  }
  return { names, states };
}

async function copyFixture(fixture: Fixture, from: string, to: string): Promise<string[]> {
  const paths = fixture.names.map((name) => join(to, name));
  await Promise.all(fixture.names.map((name, i) => copyFile(join(from, name), paths[i])));
  return paths;
}

async function readChain(paths: string[]): Promise<Buffer> {
  const chain = await VhdChain.open(paths);
  try {
    return await chain.read(0, chain.virtualSize);
  } finally {
    await chain.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

class SimulatedCrash extends Error {}

describe("VHD merge", async () => {
  const dir = await tempDir();
  const source = join(dir, "fixture");
  await import("node:fs/promises").then((fs) => fs.mkdir(source));
  const fixture = await buildFixture(source, 7);
  let run = 0;
  const workDir = async () => {
    const path = join(dir, `run-${run++}`);
    await import("node:fs/promises").then((fs) => fs.mkdir(path));
    return copyFixture(fixture, source, path);
  };

  it("merges the oldest delta into the full: the delta's path now holds a full disk with the delta's uuid, and every later point still reads right", async () => {
    const [d0, d1, d2, d3] = await workDir();
    const childUuid = await VhdFile.open(d1).then(async (f) => (await f.close(), f.footer.uuid));
    const result = await mergeVhdChain({ parent: d0, child: d1 });
    expect(result).toMatchObject({ path: d1, resumed: false });
    expect(await exists(d0)).toBe(false);
    const merged = await VhdFile.open(d1);
    expect(merged.footer.diskType).toBe(DiskType.Dynamic);
    expect(merged.footer.uuid).toBe(childUuid);
    await merged.close();
    expect((await readChain([d1])).equals(fixture.states[1])).toBe(true);
    expect((await readChain([d1, d2])).equals(fixture.states[2])).toBe(true);
    expect((await readChain([d1, d2, d3])).equals(fixture.states[3])).toBe(true);
  });

  it("merges a delta into a differencing parent, keeping the sectors the child does not hold from further down", async () => {
    const [d0, d1, d2, d3] = await workDir();
    await mergeVhdChain({ parent: d1, child: d2 });
    const merged = await VhdFile.open(d2);
    expect(merged.footer.diskType).toBe(DiskType.Differencing);
    await merged.close();
    expect((await readChain([d0, d2])).equals(fixture.states[2])).toBe(true);
    expect((await readChain([d0, d2, d3])).equals(fixture.states[3])).toBe(true);
  });

  it("costs in proportion to the child's blocks, not the disk size", async () => {
    const [d0, d1] = await workDir();
    const child = await VhdFile.open(d1);
    const allocated = Array.from({ length: child.blockCount }, (_, i) => i).filter((i) => child.hasBlock(i)).length;
    await child.close();
    const steps: MergeStep[] = [];
    const result = await mergeVhdChain({ parent: d0, child: d1, onStep: (step) => void steps.push(step) });
    expect(result.mergedBlocks).toBe(allocated);
    expect(steps.filter((step) => step.kind === "block")).toHaveLength(allocated);
  });

  for (const [parentIndex, label] of [
    [0, "a full parent"],
    [1, "a differencing parent"],
  ] as const) {
    it(`survives a crash at every step when merging into ${label}: the chain reads right at that moment, and a second call completes`, async () => {
      const probe = await workDir();
      const steps: MergeStep[] = [];
      await mergeVhdChain({ parent: probe[parentIndex], child: probe[parentIndex + 1], onStep: (step) => void steps.push(step) });
      expect(steps.length).toBeGreaterThan(6);
      for (let crashAt = 0; crashAt < steps.length; crashAt++) {
        const paths = await workDir();
        const [parent, child] = [paths[parentIndex], paths[parentIndex + 1]];
        let count = 0;
        const crashed = await mergeVhdChain({
          parent,
          child,
          onStep: () => {
            if (count++ === crashAt) throw new SimulatedCrash(`crash after step ${crashAt} (${steps[crashAt].kind})`);
          },
        }).then(
          () => undefined,
          (error: unknown) => error,
        );
        expect(crashed).toBeInstanceOf(SimulatedCrash);
        // At the moment of the crash, the chain as listed reads the newest point in time.
        const listed = (await exists(parent)) ? paths : paths.filter((path) => path !== parent);
        expect((await readChain(listed)).equals(fixture.states[3]), `chain after ${steps[crashAt].kind} #${crashAt}`).toBe(true);
        const resumed = await mergeVhdChain({ parent, child });
        expect(resumed.resumed).toBe(true);
        expect(await exists(parent)).toBe(false);
        expect(await exists(`${child}.merge.json`)).toBe(false);
        const after = paths.filter((path) => path !== parent);
        expect((await readChain(after)).equals(fixture.states[3]), `chain after resuming from ${steps[crashAt].kind} #${crashAt}`).toBe(
          true,
        );
        expect((await readChain(after.slice(0, parentIndex + 1))).equals(fixture.states[parentIndex + 1])).toBe(true);
      }
    });
  }

  it("refuses to merge a child into a file that is not its parent", async () => {
    const [d0, , d2] = await workDir();
    await expect(mergeVhdChain({ parent: d0, child: d2 })).rejects.toThrow(
      /^VHD_PARENT_MISMATCH: .*d2\.vhd is not a differencing child of .*d0\.vhd \(uuid [0-9a-f-]+\) \(.*d2\.vhd, header\)$/,
    );
  });

  it("refuses a state file left by a merge of other files", async () => {
    const [d0, d1, d2] = await workDir();
    await writeFile(`${d1}.merge.json`, JSON.stringify({ version: 1, parent: d2, child: d1, step: "blocks" }));
    await expect(mergeVhdChain({ parent: d0, child: d1 })).rejects.toMatchObject({ code: "VHD_MERGE_STATE", structure: "merge state" });
  });
});
