/**
 * The merge over a storage that is not this machine's file system (as on an SMB or NFS remote): a MergeStorage in memory
 * that loses unsynced writes in a crash (all, none or any subset of them), with a crash injected before every change the
 * merge makes. Each crash must leave a chain that reads right, and the same call again must end with exactly the bytes,
 * and the checksum table, of a merge that never crashed.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  VHD_BLOCK_SIZE,
  type MergeStep,
  type MergeVhdOptions,
  VhdChain,
  VhdFile,
  decodeBlockChecksums,
  mergeVhdChain,
} from "../../server/formats/vhd/index.js";
import { writeSidecar } from "./support/checksums.js";
import { randomWrites, writeDelta } from "./support/delta.js";
import { type CrashPolicy, MemoryMergeStorage, SimulatedCrash } from "./support/memory-merge-storage.js";
import { rawToVhd } from "./support/raw-disk.js";
import { SeededRandom } from "./support/seeded-random.js";
import { tempDir } from "./support/temp-dir.js";

const MiB = 1024 * 1024;
const SECTOR = 512;

interface Fixture {
  /** Storage path -> bytes: `vm/dN.vhd` and `vm/dN.vhd.blocksums`. */
  files: Map<string, Buffer>;
  names: string[];
  /** The disk's content at each file of the chain. */
  states: Buffer[];
}

const sums = (path: string) => `${path}.blocksums`;
const uuidOf = (seed: number, n: number) => `00000000-0000-4000-8000-${String(seed * 10 + n).padStart(12, "0")}`;

/** Writes 64 random sectors in each of `blocks` (sector offsets inside them random); returns the sectors written. */
function touchBlocks(disk: Buffer, random: SeededRandom, blocks: Iterable<number>, sectors = 64): Set<number> {
  const touched = new Set<number>();
  for (const block of blocks) {
    const first = (block * VHD_BLOCK_SIZE) / SECTOR + random.int(VHD_BLOCK_SIZE / SECTOR - sectors);
    random.fill(disk.subarray(first * SECTOR, (first + sectors) * SECTOR));
    for (let s = first; s < first + sectors; s++) touched.add(s);
  }
  return touched;
}

/**
 * A full and deltas written by the VHD writer on disk, then loaded into memory. `base` fills the full's disk;
 * `touch(disk, random, n)` changes the disk before delta n and returns the sectors it wrote.
 */
async function buildFixture(
  dir: string,
  seed: number,
  size: number,
  deltas: number,
  base: (disk: Buffer, random: SeededRandom) => void,
  touch: (disk: Buffer, random: SeededRandom, n: number) => Set<number>,
): Promise<Fixture> {
  const random = new SeededRandom(seed);
  const disk = Buffer.alloc(size);
  base(disk, random);
  await writeFile(join(dir, "base.raw"), disk);
  const names = Array.from({ length: deltas + 1 }, (_, n) => `d${n}.vhd`);
  await rawToVhd(join(dir, "base.raw"), join(dir, names[0]), size, { uuid: uuidOf(seed, 0) });
  const states = [Buffer.from(disk)];
  for (let n = 1; n < names.length; n++) {
    const touched = touch(disk, random, n);
    await writeDelta(join(dir, names[n]), disk, touched, { uuid: uuidOf(seed, n), parentUuid: uuidOf(seed, n - 1) }, random);
    states.push(Buffer.from(disk));
  }
  const files = new Map<string, Buffer>();
  for (const name of names) {
    await writeSidecar(join(dir, name));
    files.set(`vm/${name}`, await readFile(join(dir, name)));
    files.set(sums(`vm/${name}`), await readFile(sums(join(dir, name))));
  }
  return { files, names: names.map((name) => `vm/${name}`), states };
}

async function readChain(storage: MemoryMergeStorage, paths: string[], verified = false): Promise<Buffer> {
  const table = (path: string) => {
    const bytes = storage.content(sums(path));
    return verified && bytes ? decodeBlockChecksums(bytes, { file: sums(path) }) : undefined;
  };
  const chain = await VhdChain.openWith(
    paths.map((path) => async () => VhdFile.openSource(path, await storage.openForRead(path), { checksums: table(path) })),
  );
  try {
    return await chain.read(0, chain.virtualSize);
  } finally {
    await chain.close();
  }
}

function options(storage: MemoryMergeStorage, parent: string, child: string, withChecksums: boolean): MergeVhdOptions {
  return withChecksums
    ? { storage, parent, child, parentChecksums: sums(parent), childChecksums: sums(child) }
    : { storage, parent, child };
}

async function crashed(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

/** What a merge that never crashed leaves: every file's bytes. */
async function referenceMerge(fixture: Fixture, parent: string, child: string, withChecksums: boolean) {
  const storage = new MemoryMergeStorage(fixture.files);
  const steps: Array<{ step: MergeStep; changes: number }> = [];
  await mergeVhdChain({
    ...options(storage, parent, child, withChecksums),
    onStep: (step) => void steps.push({ step, changes: storage.changes }),
  });
  const files = new Map(storage.paths().map((path) => [path, storage.content(path) as Buffer]));
  return { files, changes: storage.changes, steps, bytesRead: storage.bytesRead, bytesWritten: storage.bytesWritten };
}

/**
 * Crashes the merge right before change `crashAt`, keeps the unsynced writes `policy` lets through, checks the chain at
 * that moment, then calls the merge again (crashing it once more before `crashAgainAt`, when given) until it completes;
 * the files must then be exactly the reference's.
 */
async function crashAndResume(
  fixture: Fixture,
  reference: Map<string, Buffer>,
  run: {
    parent: string;
    child: string;
    withChecksums: boolean;
    crashAt: number;
    policy: CrashPolicy;
    crashAgainAt?: number;
    /** Whether to read the whole chain at the moment of the crash. @default true */
    readChainAtCrash?: boolean;
  },
): Promise<void> {
  const moment = `crash before change ${run.crashAt} (${typeof run.policy === "string" ? run.policy : "random"} unsynced writes kept)`;
  const storage = new MemoryMergeStorage(fixture.files);
  storage.crashAt = run.crashAt;
  const error = await crashed(mergeVhdChain(options(storage, run.parent, run.child, run.withChecksums)));
  expect(error, moment).toBeInstanceOf(SimulatedCrash);
  storage.reboot(run.policy);
  if (run.readChainAtCrash !== false) {
    const listed = (await storage.exists(run.parent)) ? fixture.names : fixture.names.filter((path) => path !== run.parent);
    expect((await readChain(storage, listed)).equals(fixture.states.at(-1) as Buffer), `chain after ${moment}`).toBe(true);
  }
  if (run.crashAgainAt !== undefined) {
    storage.crashAt = storage.changes + run.crashAgainAt;
    const again = await crashed(mergeVhdChain(options(storage, run.parent, run.child, run.withChecksums)));
    storage.reboot(run.policy);
    if (again === undefined) return expectSameFiles(storage, reference, `${moment}, resumed without a second crash`);
    expect(again, `${moment}, then again`).toBeInstanceOf(SimulatedCrash);
  }
  await mergeVhdChain(options(storage, run.parent, run.child, run.withChecksums));
  expectSameFiles(storage, reference, moment);
}

function expectSameFiles(storage: MemoryMergeStorage, reference: Map<string, Buffer>, moment: string): void {
  expect(storage.paths(), `files after resuming from ${moment}`).toEqual([...reference.keys()].sort());
  for (const [path, bytes] of reference) {
    expect((storage.content(path) as Buffer).equals(bytes), `${path} after resuming from ${moment}`).toBe(true);
  }
}

describe("VHD merge over a MergeStorage that is not a file system", async () => {
  const dir = await tempDir();
  const small = join(dir, "small");
  await mkdir(small);
  // 6 blocks: every kind of step, quickly.
  const fixture = await buildFixture(
    small,
    21,
    11 * MiB + 3 * SECTOR,
    3,
    (disk, random) => void randomWrites(disk, random, 6),
    (disk, random) => randomWrites(disk, random, 10 + random.int(30)),
  );

  it("leaves exactly the bytes and checksum table that the merge on local files leaves", async () => {
    const local = join(dir, "local");
    await mkdir(local);
    for (const [path, bytes] of fixture.files) await writeFile(join(local, path.slice("vm/".length)), bytes);
    await mergeVhdChain({
      parent: join(local, "d0.vhd"),
      child: join(local, "d1.vhd"),
      parentChecksums: sums(join(local, "d0.vhd")),
      childChecksums: sums(join(local, "d1.vhd")),
    });
    const { files } = await referenceMerge(fixture, "vm/d0.vhd", "vm/d1.vhd", true);
    expect([...files.keys()].sort()).toEqual(["d1.vhd", "d2.vhd", "d3.vhd"].flatMap((name) => [`vm/${name}`, sums(`vm/${name}`)]).sort());
    for (const [path, bytes] of files) expect((await readFile(join(local, path.slice("vm/".length)))).equals(bytes), path).toBe(true);
    const storage = new MemoryMergeStorage(files);
    expect((await readChain(storage, ["vm/d1.vhd", "vm/d2.vhd", "vm/d3.vhd"], true)).equals(fixture.states[3])).toBe(true);
  });

  for (const [parentIndex, label] of [
    [0, "a full parent"],
    [1, "a differencing parent"],
  ] as const) {
    for (const withChecksums of [true, false]) {
      it(`survives a crash before every change into ${label} ${withChecksums ? "with" : "without"} block checksums, whatever unsynced writes survive, and resumes to identical bytes`, async () => {
        const [parent, child] = [fixture.names[parentIndex], fixture.names[parentIndex + 1]];
        const reference = await referenceMerge(fixture, parent, child, withChecksums);
        expect(reference.changes).toBeGreaterThan(20);
        const random = new SeededRandom(1000 + parentIndex * 10 + (withChecksums ? 1 : 0));
        for (let crashAt = 1; crashAt <= reference.changes; crashAt++) {
          // No unsynced write kept, or any of them (a random subset each time; all of them, now and then).
          for (const policy of ["none", crashAt % 4 === 0 ? "all" : random] as const) {
            await crashAndResume(fixture, reference.files, { parent, child, withChecksums, crashAt, policy });
          }
          // Every third point, crashing the resume too, somewhere in what is left.
          if (crashAt % 3 !== 0) continue;
          const crashAgainAt = 1 + random.int(reference.changes);
          await crashAndResume(fixture, reference.files, { parent, child, withChecksums, crashAt, policy: random, crashAgainAt });
        }
      }, 600_000);
    }
  }

  it("reads and writes in proportion to the child's blocks, not the disk size", async () => {
    const big = join(dir, "big");
    await mkdir(big);
    // A 200 MiB disk whose full holds 60 blocks (120 MiB of file), and a delta of 4 blocks (2 in the full, 2 not).
    const wide = await buildFixture(
      big,
      22,
      100 * VHD_BLOCK_SIZE,
      1,
      (disk, random) =>
        void touchBlocks(
          disk,
          random,
          Array.from({ length: 60 }, (_, i) => i),
          1,
        ),
      (disk, random) => touchBlocks(disk, random, [3, 40, 81, 97]),
    );
    const parentSize = (wide.files.get("vm/d0.vhd") as Buffer).length;
    const { bytesRead, bytesWritten } = await referenceMerge(wide, "vm/d0.vhd", "vm/d1.vhd", true);
    const delta = 4 * (VHD_BLOCK_SIZE + SECTOR);
    // Each child block: read (child), read (parent's block, when it has one), written once; plus headers, BATs, tables.
    expect(bytesRead).toBeLessThan(2 * delta + 2 * MiB);
    expect(bytesWritten).toBeLessThan(delta + MiB);
    expect(bytesRead + bytesWritten).toBeLessThan(parentSize / 5);
  });
});

describe("VHD merge over a MergeStorage: crashes around a checkpoint", async () => {
  const dir = await tempDir();
  // 34 child blocks: the state is checkpointed after block 32, and a resume from there skips the verification of the
  // blocks the interrupted run may have rewritten after it. Half of them are in the full already (combined in place),
  // half are new (appended): both kinds around the checkpoint.
  const evenBlocks = Array.from({ length: 18 }, (_, i) => i * 2);
  const childBlocks = Array.from({ length: 34 }, (_, i) => i);
  const fixture = await buildFixture(
    dir,
    23,
    36 * VHD_BLOCK_SIZE,
    1,
    (disk, random) => void touchBlocks(disk, random, evenBlocks, 1),
    (disk, random) => touchBlocks(disk, random, childBlocks, 8),
  );

  it("resumes to identical bytes from a crash before any change of blocks 30 to 34, with the checkpoint written or not", async () => {
    const [parent, child] = fixture.names;
    const reference = await referenceMerge(fixture, parent, child, true);
    const doneAt = (done: number) =>
      (reference.steps.find(({ step }) => step.kind === "block" && step.done === done) as { changes: number }).changes;
    const random = new SeededRandom(77);
    for (let crashAt = doneAt(29) + 1; crashAt <= doneAt(34); crashAt++) {
      // The chain at each crash is read by the tests above; here the point is the resume from either side of the checkpoint.
      await crashAndResume(fixture, reference.files, {
        parent,
        child,
        withChecksums: true,
        crashAt,
        policy: random,
        readChainAtCrash: false,
      });
    }
  }, 600_000);
});
