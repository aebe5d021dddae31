import { createWriteStream } from "node:fs";
import { access, copyFile, mkdir, readFile, readdir, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import {
  VHD_BLOCK_SIZE,
  type MergeStep,
  type MergeVhdOptions,
  VhdChain,
  VhdError,
  VhdFile,
  createVhdStream,
  decodeBlockChecksums,
  finishMergeWithoutState,
  mergeVhdChain,
  verifyVhdFile,
} from "../../server/formats/vhd/index.js";
import { flipByte, writeSidecar } from "./support/checksums.js";
import { randomWrites, writeDelta } from "./support/delta.js";
import { rawToVhd } from "./support/raw-disk.js";
import { SeededRandom } from "./support/seeded-random.js";
import { tempDir } from "./support/temp-dir.js";

const MiB = 1024 * 1024;
const SIZE = 11 * MiB + 512 * 3;
const NAMES = ["d0.vhd", "d1.vhd", "d2.vhd", "d3.vhd"];

class SimulatedCrash extends Error {}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

const sums = (path: string) => `${path}.blocksums`;

/** A full and three deltas, each with its sidecar, written once; each test works on a copy. */
async function buildFixture(dir: string, seed: number): Promise<Buffer[]> {
  const random = new SeededRandom(seed);
  const disk = Buffer.alloc(SIZE);
  randomWrites(disk, random, 6);
  await writeFile(join(dir, "base.raw"), disk);
  const uuid = (n: number) => `00000000-0000-4000-8000-${String(seed * 10 + n).padStart(12, "0")}`;
  await rawToVhd(join(dir, "base.raw"), join(dir, NAMES[0]), SIZE, { uuid: uuid(0) });
  const states = [Buffer.from(disk)];
  for (let n = 1; n < NAMES.length; n++) {
    const touched = randomWrites(disk, random, 10 + random.int(30));
    await writeDelta(join(dir, NAMES[n]), disk, touched, { uuid: uuid(n), parentUuid: uuid(n - 1) }, random);
    states.push(Buffer.from(disk));
  }
  for (const name of NAMES) await writeSidecar(join(dir, name));
  return states;
}

async function readChain(paths: string[], options: { verified?: boolean } = {}): Promise<Buffer> {
  const checksums = options.verified
    ? await Promise.all(paths.map(async (path) => decodeBlockChecksums(await readFile(sums(path)), { file: sums(path) })))
    : undefined;
  const chain = await VhdChain.open(paths, { checksums });
  try {
    return await chain.read(0, chain.virtualSize);
  } finally {
    await chain.close();
  }
}

/** The merged file and its sidecar describe each other exactly: decoded, opened together, verified block by block. */
async function expectConsistentPair(vhd: string, sidecar: string): Promise<void> {
  const table = decodeBlockChecksums(await readFile(sidecar), { file: sidecar });
  const file = await VhdFile.open(vhd, { checksums: table });
  try {
    expect(table.vhdUuid).toBe(file.footer.uuid);
    const result = await verifyVhdFile(file);
    expect(result.damaged).toEqual([]);
    expect(result.blocks).toBe(table.entries.filter(Boolean).length);
  } finally {
    await file.close();
  }
}

/** Nothing of the merge is left beside the files: no parent, no parent sidecar, no state, no merged table, no temporary. */
async function expectNothingLeft(dir: string, parent: string): Promise<void> {
  expect(await exists(parent)).toBe(false);
  expect(await exists(sums(parent))).toBe(false);
  const names = await readdir(dir);
  expect(names.filter((name) => /\.merge\.json|\.merging|\.tmp$/.test(name))).toEqual([]);
}

function checksumOptions(parent: string, child: string): Pick<MergeVhdOptions, "parent" | "child" | "parentChecksums" | "childChecksums"> {
  return { parent, child, parentChecksums: sums(parent), childChecksums: sums(child) };
}

async function crashed(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe("VHD merge with block checksums", async () => {
  const dir = await tempDir();
  const source = join(dir, "fixture");
  await mkdir(source);
  const states = await buildFixture(source, 8);
  let run = 0;
  /** A fresh copy of the four VHDs and their sidecars in their own folder. */
  const workDir = async (): Promise<{ folder: string; paths: string[] }> => {
    const folder = join(dir, `run-${run++}`);
    await mkdir(folder);
    for (const name of NAMES) {
      await copyFile(join(source, name), join(folder, name));
      await copyFile(sums(join(source, name)), sums(join(folder, name)));
    }
    return { folder, paths: NAMES.map((name) => join(folder, name)) };
  };

  it("gives the merged file a sidecar that describes it exactly, with the child's uuid, and removes the parent's", async () => {
    const { folder, paths } = await workDir();
    const [d0, d1, d2, d3] = paths;
    const result = await mergeVhdChain(checksumOptions(d0, d1));
    expect(result).toMatchObject({ path: d1, resumed: false, checksumsWritten: true });
    await expectNothingLeft(folder, d0);
    await expectConsistentPair(d1, sums(d1));
    expect((await readChain([d1, d2, d3], { verified: true })).equals(states[3])).toBe(true);
    expect((await readChain([d1], { verified: true })).equals(states[1])).toBe(true);
  });

  for (const [parentIndex, label] of [
    [0, "a full parent"],
    [1, "a differencing parent"],
  ] as const) {
    it(`survives a crash at every step into ${label}: the chain reads right at that moment, and a second call ends with a consistent pair`, async () => {
      const probe = await workDir();
      const steps: MergeStep[] = [];
      await mergeVhdChain({
        ...checksumOptions(probe.paths[parentIndex], probe.paths[parentIndex + 1]),
        onStep: (step) => void steps.push(step),
      });
      const kinds = steps.map((step) => step.kind);
      expect(kinds.slice(-4)).toEqual(["checksums-written", "identity", "renamed", "checksums-renamed"]);
      for (let crashAt = 0; crashAt < steps.length; crashAt++) {
        const { folder, paths } = await workDir();
        const [parent, child] = [paths[parentIndex], paths[parentIndex + 1]];
        let count = 0;
        const error = await crashed(
          mergeVhdChain({
            ...checksumOptions(parent, child),
            onStep: () => {
              if (count++ === crashAt) throw new SimulatedCrash(`crash after step ${crashAt} (${kinds[crashAt]})`);
            },
          }),
        );
        expect(error).toBeInstanceOf(SimulatedCrash);
        const moment = `${kinds[crashAt]} #${crashAt}`;
        const listed = (await exists(parent)) ? paths : paths.filter((path) => path !== parent);
        expect((await readChain(listed)).equals(states[3]), `chain after ${moment}`).toBe(true);
        const resumed = await mergeVhdChain(checksumOptions(parent, child));
        expect(resumed).toMatchObject({ resumed: true, checksumsWritten: true });
        await expectNothingLeft(folder, parent);
        await expectConsistentPair(child, sums(child));
        const after = paths.filter((path) => path !== parent);
        expect((await readChain(after, { verified: true })).equals(states[3]), `verified chain after resuming from ${moment}`).toBe(true);
        expect((await readChain(after.slice(0, parentIndex + 1), { verified: true })).equals(states[parentIndex + 1])).toBe(true);
      }
    }, 180_000);
  }

  it("stops at a damaged child block before writing anything of it (VHD_CHECKSUM_MISMATCH naming the child and the block)", async () => {
    const { paths } = await workDir();
    const [d0, d1] = paths;
    const child = await VhdFile.open(d1);
    const blocks = Array.from({ length: child.blockCount }, (_, i) => i).filter((i) => child.hasBlock(i));
    const damaged = blocks[1];
    const offset = child.blockOffset(damaged) as number;
    await child.close();
    await flipByte(d1, offset + 512 + 4096);
    const parentBefore = await readFile(d0);
    const steps: MergeStep[] = [];
    const error = await crashed(mergeVhdChain({ ...checksumOptions(d0, d1), onStep: (step) => void steps.push(step) }));
    expect(error).toBeInstanceOf(VhdError);
    expect(error).toMatchObject({ code: "VHD_CHECKSUM_MISMATCH", file: d1, structure: `block ${damaged}`, offset });
    expect((error as VhdError).message).toContain("the file is damaged; restore another restore point or run a verify");
    expect(steps.filter((step) => step.kind === "block-data").map((step) => (step as { index: number }).index)).toEqual([blocks[0]]);
    // the damaged block's place in the parent is as it was (its data, its bitmap, its BAT entry)
    const parent = await VhdFile.open(d0);
    const at = parent.blockOffset(damaged);
    await parent.close();
    const parentAfter = await readFile(d0);
    const batEntry = (bytes: Buffer) => bytes.readUInt32BE(2048 + damaged * 4);
    expect(batEntry(parentAfter)).toBe(batEntry(parentBefore));
    if (at !== undefined)
      expect(parentAfter.subarray(at, at + 512 + VHD_BLOCK_SIZE).equals(parentBefore.subarray(at, at + 512 + VHD_BLOCK_SIZE))).toBe(true);
  });

  it("stops at a damaged parent block it would combine, naming the parent", async () => {
    const { paths } = await workDir();
    const [, d1, d2] = paths;
    const [parent, child] = await Promise.all([VhdFile.open(d1), VhdFile.open(d2)]);
    const shared = Array.from({ length: child.blockCount }, (_, i) => i).filter((i) => child.hasBlock(i) && parent.hasBlock(i));
    const offset = parent.blockOffset(shared[0]) as number;
    await Promise.all([parent.close(), child.close()]);
    expect(shared.length).toBeGreaterThan(0);
    await flipByte(d1, offset + 100);
    const steps: MergeStep[] = [];
    const error = await crashed(mergeVhdChain({ ...checksumOptions(d1, d2), onStep: (step) => void steps.push(step) }));
    expect(error).toMatchObject({ code: "VHD_CHECKSUM_MISMATCH", file: d1, structure: `block ${shared[0]}`, offset });
    expect(steps.some((step) => step.kind === "block-data" && step.index === shared[0])).toBe(false);
  });

  for (const lostAfter of ["checksums-written", "identity"] as const) {
    it(`finishMergeWithoutState finishes a merge whose state file was lost right after "${lostAfter}"`, async () => {
      const { folder, paths } = await workDir();
      const [d0, d1, d2, d3] = paths;
      const error = await crashed(
        mergeVhdChain({
          ...checksumOptions(d0, d1),
          onStep: async (step) => {
            if (step.kind !== lostAfter) return;
            await unlink(`${d1}.merge.json`);
            throw new SimulatedCrash("crash, and the state file is lost");
          },
        }),
      );
      expect(error).toBeInstanceOf(SimulatedCrash);
      // a plain resume cannot tell this apart from a fresh merge, and refuses
      await expect(mergeVhdChain(checksumOptions(d0, d1))).rejects.toMatchObject({ code: "VHD_PARENT_MISMATCH" });
      expect(await finishMergeWithoutState(checksumOptions(d0, d1))).toBe("finished");
      await expectNothingLeft(folder, d0);
      await expectConsistentPair(d1, sums(d1));
      expect((await readChain([d1, d2, d3], { verified: true })).equals(states[3])).toBe(true);
      expect((await readChain([d1], { verified: true })).equals(states[1])).toBe(true);
    });
  }

  it("finishMergeWithoutState also finishes a merge done without checksums", async () => {
    const { folder, paths } = await workDir();
    const [d0, d1, d2] = paths;
    await unlink(sums(d0));
    await unlink(sums(d1));
    const error = await crashed(
      mergeVhdChain({
        parent: d0,
        child: d1,
        onStep: async (step) => {
          if (step.kind !== "identity") return;
          await unlink(`${d1}.merge.json`);
          throw new SimulatedCrash("lost");
        },
      }),
    );
    expect(error).toBeInstanceOf(SimulatedCrash);
    expect(await finishMergeWithoutState({ parent: d0, child: d1 })).toBe("finished");
    await expectNothingLeft(folder, d0);
    expect((await readChain([d1, d2])).equals(states[2])).toBe(true);
  });

  it("finishMergeWithoutState refuses, changing nothing, when the parent is not the merged child", async () => {
    const { paths } = await workDir();
    const [d0, d1] = paths;
    const before = await Promise.all([d0, d1, sums(d0), sums(d1)].map((path) => readFile(path)));
    expect(await finishMergeWithoutState(checksumOptions(d0, d1))).toBe("not-merged");
    const after = await Promise.all([d0, d1, sums(d0), sums(d1)].map((path) => readFile(path)));
    after.forEach((bytes, i) => expect(bytes.equals(before[i])).toBe(true));
    expect(await finishMergeWithoutState({ ...checksumOptions(d0, d1), parent: join(dirOf(d0), "missing.vhd") })).toBe("not-merged");
  });

  it("finishMergeWithoutState refuses a parent that carries the child's uuid but not all of its sectors", async () => {
    const { paths } = await workDir();
    const [d0, d1] = paths;
    await crashed(
      mergeVhdChain({
        ...checksumOptions(d0, d1),
        onStep: async (step) => {
          if (step.kind !== "identity") return;
          await unlink(`${d1}.merge.json`);
          throw new SimulatedCrash("lost");
        },
      }),
    );
    const child = await VhdFile.open(d1);
    const block = Array.from({ length: child.blockCount }, (_, i) => i).find((i) => child.hasBlock(i)) as number;
    const bitmap = await child.readBitmap(block);
    await child.close();
    const sector = Array.from({ length: 4096 }, (_, s) => s).find((s) => (bitmap[s >> 3] & (0x80 >> (s & 7))) !== 0) as number;
    const parent = await VhdFile.open(d0);
    const at = parent.dataOffset(block) as number;
    await parent.close();
    await flipByte(d0, at + sector * 512);
    const before = await readFile(d0);
    expect(await finishMergeWithoutState(checksumOptions(d0, d1))).toBe("not-merged");
    expect((await readFile(d0)).equals(before)).toBe(true);
    expect(await exists(d0)).toBe(true);
  });

  it("finishMergeWithoutState leaves a merge that has its state file to mergeVhdChain", async () => {
    const { paths } = await workDir();
    const [d0, d1] = paths;
    await crashed(
      mergeVhdChain({
        ...checksumOptions(d0, d1),
        onStep: (step) => {
          if (step.kind === "identity") throw new SimulatedCrash("crash");
        },
      }),
    );
    await expect(finishMergeWithoutState(checksumOptions(d0, d1))).rejects.toMatchObject({ code: "VHD_MERGE_STATE" });
    expect((await mergeVhdChain(checksumOptions(d0, d1))).resumed).toBe(true);
  });

  it("an abort stops the merge between two blocks with the signal's reason, resumable like a crash", async () => {
    const { folder, paths } = await workDir();
    const [d0, d1, d2, d3] = paths;
    const controller = new AbortController();
    const reason = new Error("the clean was cancelled");
    const error = await crashed(
      mergeVhdChain({
        ...checksumOptions(d0, d1),
        signal: controller.signal,
        onStep: (step) => {
          if (step.kind === "block" && step.done === 1) controller.abort(reason);
        },
      }),
    );
    expect(error).toBe(reason);
    expect(await exists(`${d1}.merge.json`)).toBe(true);
    expect((await readChain(paths)).equals(states[3])).toBe(true);
    expect((await mergeVhdChain(checksumOptions(d0, d1))).resumed).toBe(true);
    await expectNothingLeft(folder, d0);
    await expectConsistentPair(d1, sums(d1));
    expect((await readChain([d1, d2, d3], { verified: true })).equals(states[3])).toBe(true);
  });

  it("with the parent's sidecar missing, the merged file gets none (the child's goes before the rename)", async () => {
    const { folder, paths } = await workDir();
    const [d0, d1, d2] = paths;
    await unlink(sums(d0));
    const steps: MergeStep[] = [];
    const result = await mergeVhdChain({ ...checksumOptions(d0, d1), onStep: (step) => void steps.push(step) });
    expect(result.checksumsWritten).toBe(false);
    expect(await exists(sums(d1))).toBe(false);
    expect(steps.some((step) => step.kind.startsWith("checksums"))).toBe(false);
    await expectNothingLeft(folder, d0);
    expect((await readChain([d1, d2])).equals(states[2])).toBe(true);
  });

  it("with the child's sidecar missing, the merged file still gets an exact one (built from the parent's and the bytes written)", async () => {
    const { folder, paths } = await workDir();
    const [d0, d1] = paths;
    await unlink(sums(d1));
    const result = await mergeVhdChain(checksumOptions(d0, d1));
    expect(result.checksumsWritten).toBe(true);
    await expectNothingLeft(folder, d0);
    await expectConsistentPair(d1, sums(d1));
  });

  it("refuses a parent sidecar that does not describe the parent, before writing anything", async () => {
    const { paths } = await workDir();
    const [d0, d1, d2] = paths;
    await copyFile(sums(d2), sums(d0));
    const before = await readFile(d0);
    await expect(mergeVhdChain(checksumOptions(d0, d1))).rejects.toMatchObject({ code: "VHD_CHECKSUM_MISMATCH", file: d0 });
    expect((await readFile(d0)).equals(before)).toBe(true);
  });
});

describe("VHD merge with block checksums, past the first checkpoint", async () => {
  const dir = await tempDir();
  const blocks = 70;
  const size = blocks * VHD_BLOCK_SIZE;
  const parentUuid = "00000000-0000-4000-8000-000000000901";
  const indexes = Array.from({ length: blocks }, (_, i) => i);
  /** Half of each child block's sectors: the other half reads from the parent, so the parent's bytes matter. */
  const halfBitmap = Buffer.alloc(512, 0xaa);
  async function write(path: string, options: Parameters<typeof createVhdStream>[0]): Promise<void> {
    await pipeline(createVhdStream(options), createWriteStream(path));
  }
  const parent = join(dir, "p.vhd");
  const child = join(dir, "c.vhd");
  await write(parent, {
    virtualSize: size,
    uuid: parentUuid,
    blockIndexes: indexes,
    blocks: indexes.map((index) => ({ index, data: Buffer.alloc(VHD_BLOCK_SIZE, index) })),
  });
  await write(child, {
    virtualSize: size,
    uuid: "00000000-0000-4000-8000-000000000902",
    parent: { uuid: parentUuid },
    blockIndexes: indexes,
    blocks: indexes.map((index) => ({ index, data: Buffer.alloc(VHD_BLOCK_SIZE, 0x80 + index), bitmap: halfBitmap })),
  });
  await writeSidecar(parent);
  await writeSidecar(child);

  it("a resume does not verify the blocks the interrupted run may have rewritten, but still verifies those it cannot have touched", async () => {
    const crashAfter = 40; // checkpoint at 32, so the resume starts at 32 and blocks 32 to 63 may have been rewritten
    let count = 0;
    const error = await crashed(
      mergeVhdChain({
        ...checksumOptions(parent, child),
        onStep: (step) => {
          if (step.kind === "block" && ++count === crashAfter) throw new SimulatedCrash("crash");
        },
      }),
    );
    expect(error).toBeInstanceOf(SimulatedCrash);
    expect(JSON.parse(await readFile(`${child}.merge.json`, "utf8")).nextBlock).toBe(32);
    const file = await VhdFile.open(parent);
    const damagedAt = file.blockOffset(66) as number;
    await file.close();
    await flipByte(parent, damagedAt + 512 + 1); // a sector the child does not hold: it would be kept as is
    const resumed = await crashed(mergeVhdChain(checksumOptions(parent, child)));
    expect(resumed).toMatchObject({ code: "VHD_CHECKSUM_MISMATCH", file: parent, structure: "block 66" });
    await flipByte(parent, damagedAt + 512 + 1);
    const done = await mergeVhdChain(checksumOptions(parent, child));
    expect(done).toMatchObject({ resumed: true, checksumsWritten: true });
    await expectConsistentPair(child, sums(child));
    const merged = await VhdChain.open([child], { checksums: [decodeBlockChecksums(await readFile(sums(child)))] });
    try {
      const block = await merged.read(40 * VHD_BLOCK_SIZE, VHD_BLOCK_SIZE);
      expect(block[0]).toBe(0x80 + 40); // sector 0: the child's
      expect(block[512]).toBe(40); // sector 1: the parent's
    } finally {
      await merged.close();
    }
  });
});

function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/"));
}
