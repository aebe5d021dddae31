import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DiskType,
  type MergeStep,
  VHD_BLOCK_SIZE,
  VhdChain,
  type VhdFile,
  decodeBlockChecksums,
  mergeVhdChain,
  verifyVhdFile,
} from "../../server/formats/vhd/index.js";
import { S3Remote } from "../../server/remotes/s3-remote.js";
import { canMergeByComposition, mergeByComposition } from "../../server/repository/composed-merge.js";
import { openRemoteVhd } from "../../server/repository/remote-vhd.js";
import { flipByte, writeSidecar } from "../formats/support/checksums.js";
import { writeDelta } from "../formats/support/delta.js";
import { rawToVhd } from "../formats/support/raw-disk.js";
import { SeededRandom } from "../formats/support/seeded-random.js";
import { tempDir } from "../formats/support/temp-dir.js";
import { startS3rver, type S3rverPeer } from "../remotes/s3rver-process.js";

const MiB = 1024 * 1024;
const SECTORS_PER_BLOCK = VHD_BLOCK_SIZE / 512;
const NAMES = ["d0.vhd", "d1.vhd", "d2.vhd"];
const FILES = NAMES.flatMap((name) => [name, `${name}.blocksums`]);

/** A full disk of `blocks` blocks (the first `filled` allocated), and two deltas touching a few blocks each. */
interface Fixture {
  dir: string;
  /** The disk at d0, d1, d2. */
  states: Buffer[];
  /** d1 merged into d0 in place (mergeVhdChain on local copies): the reference. */
  merged: { vhd: Buffer; sums: Buffer };
  blocks: number;
}

/** Some sectors of block `index` (a run in its middle), as sector numbers of the disk. */
function someSectorsOf(index: number, random: SeededRandom): number[] {
  const first = index * SECTORS_PER_BLOCK + 1 + random.int(SECTORS_PER_BLOCK / 2);
  return Array.from({ length: 8 + random.int(300) }, (_, k) => first + k);
}

async function buildFixture(dir: string, blocks: number, filled: number, seed: number): Promise<Fixture> {
  await mkdir(dir, { recursive: true });
  const random = new SeededRandom(seed);
  const disk = Buffer.alloc(blocks * VHD_BLOCK_SIZE);
  randomBytes(filled * VHD_BLOCK_SIZE).copy(disk);
  await writeFile(join(dir, "base.raw"), disk);
  const uuid = (n: number) => `00000000-0000-4000-8000-${String(seed * 10 + n).padStart(12, "0")}`;
  await rawToVhd(join(dir, "base.raw"), join(dir, NAMES[0]), disk.length, { uuid: uuid(0) });
  const states = [Buffer.from(disk)];
  // d1: two blocks the parent has (combined), one it has not (appended); d2: one of each.
  const touched = [
    [1, 5, filled + 1],
    [2, filled],
  ];
  for (let n = 1; n <= 2; n++) {
    const sectors = new Set(touched[n - 1].flatMap((index) => someSectorsOf(index, random)));
    for (const sector of sectors) random.fill(disk.subarray(sector * 512, (sector + 1) * 512));
    await writeDelta(join(dir, NAMES[n]), disk, sectors, { uuid: uuid(n), parentUuid: uuid(n - 1) }, random);
    states.push(Buffer.from(disk));
  }
  for (const name of NAMES) await writeSidecar(join(dir, name));
  const reference = join(dir, "reference");
  await mkdir(reference);
  for (const name of FILES) await copyFile(join(dir, name), join(reference, name));
  const [d0, d1] = [join(reference, NAMES[0]), join(reference, NAMES[1])];
  await mergeVhdChain({ parent: d0, child: d1, parentChecksums: `${d0}.blocksums`, childChecksums: `${d1}.blocksums` });
  return { dir, states, merged: { vhd: await readFile(d1), sums: await readFile(`${d1}.blocksums`) }, blocks };
}

/** The chain ending at `leaf` in `folder` as the remote lists it now, each parent found by the uuid its child names. */
async function readChainOnRemote(remote: S3Remote, folder: string, leaf: string): Promise<Buffer> {
  const files: Array<{ path: string; uuid: string; parentUuid?: string }> = [];
  for (const name of await remote.list(folder)) {
    if (!name.endsWith(".vhd")) continue;
    const file = await openRemoteVhd(remote, `${folder}/${name}`);
    const differencing = file.diskType === DiskType.Differencing;
    files.push({ path: `${folder}/${name}`, uuid: file.footer.uuid, parentUuid: differencing ? file.header?.parentUuid : undefined });
    await file.close();
  }
  const chain = [files.find((file) => file.path === `${folder}/${leaf}`)];
  while (chain[0]?.parentUuid !== undefined) {
    const parentUuid = chain[0].parentUuid;
    const parents = files.filter((file) => file.uuid === parentUuid);
    expect(parents, `exactly one parent ${parentUuid} in ${folder}`).toHaveLength(1);
    chain.unshift(parents[0]);
  }
  const opened = await VhdChain.openWith(chain.map((file) => () => openRemoteVhd(remote, file?.path as string)));
  try {
    return await opened.read(0, opened.files[0].virtualSize);
  } finally {
    await opened.close();
  }
}

/** Every `.blocksums` listed describes its VHD as it is now: every block verifies. */
async function expectSidecarsTrue(remote: S3Remote, folder: string): Promise<void> {
  const names = await remote.list(folder);
  for (const name of names) {
    if (!name.endsWith(".vhd.blocksums")) continue;
    const vhd = `${folder}/${name.slice(0, -".blocksums".length)}`;
    if (!names.includes(name.slice(0, -".blocksums".length))) continue;
    const table = decodeBlockChecksums(await remote.readFile(`${folder}/${name}`));
    let file: VhdFile | undefined;
    try {
      file = await openRemoteVhd(remote, vhd, table);
      expect((await verifyVhdFile(file)).damaged, `${name} describes ${vhd}`).toEqual([]);
    } finally {
      await file?.close();
    }
  }
}

class SimulatedCrash extends Error {}

describe("VHD merges on S3 by server-side composition", async () => {
  const dir = await tempDir("cairn-composed-merge-");
  let peer: S3rverPeer;
  let remote: S3Remote;
  let small: Fixture;
  let tiny: Fixture;
  let folders = 0;

  beforeAll(async () => {
    [peer, small, tiny] = await Promise.all([
      startS3rver(),
      buildFixture(join(dir, "small"), 16, 14, 3),
      buildFixture(join(dir, "tiny"), 10, 8, 4),
    ]);
    remote = new S3Remote({ endpoint: peer.endpoint, bucket: peer.bucket, accessKeyId: "S3RVER", secretAccessKey: "S3RVER", prefix: "cm" });
  }, 120_000);
  afterAll(async () => {
    await remote?.close();
    await peer?.stop();
  });

  /** A fresh folder on the remote holding the fixture's files. */
  async function upload(fixture: Fixture): Promise<string> {
    const folder = `vm/f${folders++}`;
    for (const name of FILES) await remote.writeFile(`${folder}/${name}`, await readFile(join(fixture.dir, name)));
    return folder;
  }

  const mergeOptions = (folder: string) => ({
    parent: `${folder}/d0.vhd`,
    child: `${folder}/d1.vhd`,
    parentChecksums: `${folder}/d0.vhd.blocksums`,
    childChecksums: `${folder}/d1.vhd.blocksums`,
  });

  it("merges a delta into its full: the object is byte for byte the in-place merge's, its block checksums too", async () => {
    expect(canMergeByComposition(remote)).toBe(true);
    const folder = await upload(small);
    peer.api.resetCounters();
    const steps: MergeStep[] = [];
    const result = await mergeByComposition(remote, { ...mergeOptions(folder), onStep: (step) => void steps.push(step) });
    expect(result).toEqual({ mergedBlocks: 3, resumed: false, checksumsWritten: true });
    expect((await remote.readFile(`${folder}/d1.vhd`)).equals(small.merged.vhd)).toBe(true);
    expect((await remote.readFile(`${folder}/d1.vhd.blocksums`)).equals(small.merged.sums)).toBe(true);
    expect(await remote.list(folder)).toEqual(["d1.vhd", "d1.vhd.blocksums", "d2.vhd", "d2.vhd.blocksums"]);
    expect((await readChainOnRemote(remote, folder, "d1.vhd")).equals(small.states[1])).toBe(true);
    expect((await readChainOnRemote(remote, folder, "d2.vhd")).equals(small.states[2])).toBe(true);
    await expectSidecarsTrue(remote, folder);
    expect(steps.map((step) => step.kind)).toEqual([
      "planned",
      "block",
      "block",
      "block",
      "checksums-written",
      "identity",
      "checksums-renamed",
      "renamed",
    ]);
    expect(peer.api.operations.get("UploadPartCopy")).toBeGreaterThan(0);
    expect(peer.api.refusals).toEqual([]);
    expect(peer.api.openUploads()).toEqual([]);
  }, 300_000);

  it("uploads in proportion to the delta, not the disk: the same delta on a disk 4 times larger uploads as much", async () => {
    const large = await buildFixture(join(dir, "large"), 40, 38, 3);
    const measure = async (fixture: Fixture) => {
      const folder = await upload(fixture);
      peer.api.resetCounters();
      await mergeByComposition(remote, mergeOptions(folder));
      expect((await remote.readFile(`${folder}/d1.vhd`)).equals(fixture.merged.vhd)).toBe(true);
      expect(peer.api.refusals).toEqual([]);
      return { uploaded: peer.api.uploadedBytes, copied: peer.api.copiedBytes, size: fixture.merged.vhd.length };
    };
    const [few, many] = [await measure(small), await measure(large)];
    // The child's 3 blocks (6 MiB) and, around each changed region, parent bytes to make S3's 5 MiB parts.
    expect(few.uploaded).toBeLessThan(3 * VHD_BLOCK_SIZE + 3 * 2 * 5 * MiB);
    expect(Math.abs(many.uploaded - few.uploaded)).toBeLessThan(64 * 1024);
    expect(many.copied - few.copied).toBeGreaterThanOrEqual(24 * VHD_BLOCK_SIZE);
    expect(many.uploaded).toBeLessThan(many.size / 4);
    console.info(`composed merge: ${few.size} B file: ${few.uploaded} B uploaded; ${many.size} B file: ${many.uploaded} B uploaded`);
  }, 600_000);

  it("survives a crash after every step: the folder reads right at that moment, no table describes a changed file, a second call finishes", async () => {
    const probe = await upload(tiny);
    const steps: MergeStep[] = [];
    await mergeByComposition(remote, { ...mergeOptions(probe), onStep: (step) => void steps.push(step) });
    for (let crashAt = 0; crashAt < steps.length; crashAt++) {
      const folder = await upload(tiny);
      let count = 0;
      const crashed = await mergeByComposition(remote, {
        ...mergeOptions(folder),
        onStep: () => {
          if (count++ === crashAt) throw new SimulatedCrash(`crash after ${steps[crashAt].kind} #${crashAt}`);
        },
      }).catch((error: unknown) => error);
      expect(crashed).toBeInstanceOf(SimulatedCrash);
      const listed = await remote.list(folder);
      expect(listed.every((name) => [...FILES, "d1.vhd.merge.json", "d1.vhd.blocksums.merging"].includes(name))).toBe(true);
      expect((await readChainOnRemote(remote, folder, "d2.vhd")).equals(tiny.states[2]), `after ${steps[crashAt].kind}`).toBe(true);
      await expectSidecarsTrue(remote, folder);
      const resumed = await mergeByComposition(remote, mergeOptions(folder));
      expect(resumed).toMatchObject({ resumed: true, checksumsWritten: true });
      expect((await remote.readFile(`${folder}/d1.vhd`)).equals(tiny.merged.vhd), `resumed after ${steps[crashAt].kind}`).toBe(true);
      expect((await remote.readFile(`${folder}/d1.vhd.blocksums`)).equals(tiny.merged.sums)).toBe(true);
      expect(await remote.list(folder)).toEqual(["d1.vhd", "d1.vhd.blocksums", "d2.vhd", "d2.vhd.blocksums"]);
    }
    expect(peer.api.openUploads()).toEqual([]);
  }, 900_000);

  it("aborts, on the next call, an upload a killed process left open, and finishes the same", async () => {
    const folder = await upload(small);
    // A process killed mid-upload never aborts its upload: here its abort is lost on the way.
    peer.api.intercept = (operation) =>
      operation === "AbortMultipartUpload" ? { status: 500, code: "InternalError", message: "connection lost" } : undefined;
    const controller = new AbortController();
    try {
      const killed = await mergeByComposition(remote, {
        ...mergeOptions(folder),
        signal: controller.signal,
        onStep: (step) => {
          if (step.kind === "block" && step.done === 2) controller.abort(new SimulatedCrash("killed"));
        },
      }).catch((error: unknown) => error);
      expect(killed).toBeInstanceOf(Error);
    } finally {
      peer.api.intercept = undefined;
    }
    const left = peer.api.openUploads().filter((upload) => upload.key === `cm/${folder}/d1.vhd`);
    expect(left).toHaveLength(1);
    const state = JSON.parse((await remote.readFile(`${folder}/d1.vhd.merge.json`)).toString()) as { method: string; uploadId: string };
    expect(state).toMatchObject({ method: "compose", uploadId: left[0].uploadId });
    expect((await readChainOnRemote(remote, folder, "d2.vhd")).equals(small.states[2])).toBe(true);
    const resumed = await mergeByComposition(remote, mergeOptions(folder));
    expect(resumed.resumed).toBe(true);
    expect(peer.api.openUploads()).toEqual([]);
    expect((await remote.readFile(`${folder}/d1.vhd`)).equals(small.merged.vhd)).toBe(true);
    expect(await remote.list(folder)).toEqual(["d1.vhd", "d1.vhd.blocksums", "d2.vhd", "d2.vhd.blocksums"]);
  }, 300_000);

  it("finishes the same after its process is killed (SIGKILL) mid-upload, aborting the upload it left", async () => {
    const folder = await upload(tiny);
    const key = `cm/${folder}/d1.vhd`;
    let parts = 0;
    let kill: (() => void) | undefined;
    // The kill lands while the proxy holds the second part: the process dies with its upload open and a request in flight.
    peer.api.intercept = (operation, url) => {
      if ((operation === "UploadPart" || operation === "UploadPartCopy") && decodeURIComponent(url.pathname).endsWith(key) && ++parts === 2)
        kill?.();
      return undefined;
    };
    try {
      const child = spawn(
        process.execPath,
        ["--import", "tsx", "test/repository/composed-merge-child.ts", peer.endpoint, peer.bucket, "cm", folder],
        { cwd: join(import.meta.dirname, "..", ".."), stdio: ["ignore", "ignore", "pipe"] },
      );
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
      kill = () => child.kill("SIGKILL");
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
        child.once("exit", (exitCode, exitSignal) => resolve([exitCode, exitSignal])),
      );
      expect({ code, signal }, stderr).toEqual({ code: null, signal: "SIGKILL" });
    } finally {
      peer.api.intercept = undefined;
    }
    expect(peer.api.openUploads().filter((open) => open.key === key)).toHaveLength(1);
    expect((await readChainOnRemote(remote, folder, "d2.vhd")).equals(tiny.states[2])).toBe(true);
    await expectSidecarsTrue(remote, folder);
    const resumed = await mergeByComposition(remote, mergeOptions(folder));
    expect(resumed).toMatchObject({ resumed: true, checksumsWritten: true });
    expect(peer.api.openUploads().filter((open) => open.key === key)).toEqual([]);
    expect((await remote.readFile(`${folder}/d1.vhd`)).equals(tiny.merged.vhd)).toBe(true);
    expect((await remote.readFile(`${folder}/d1.vhd.blocksums`)).equals(tiny.merged.sums)).toBe(true);
    expect(await remote.list(folder)).toEqual(["d1.vhd", "d1.vhd.blocksums", "d2.vhd", "d2.vhd.blocksums"]);
  }, 300_000);

  it("refuses to merge a parent block that does not match its checksum: nothing is replaced", async () => {
    const damaged = join(dir, "damaged");
    await mkdir(damaged);
    for (const name of FILES) await copyFile(join(small.dir, name), join(damaged, name));
    const parent = await import("../../server/formats/vhd/index.js").then(({ VhdFile }) => VhdFile.open(join(damaged, "d0.vhd")));
    const at = parent.dataOffset(5) as number;
    await parent.close();
    await flipByte(join(damaged, "d0.vhd"), at + 100);
    const folder = await upload({ ...small, dir: damaged });
    const error = await mergeByComposition(remote, mergeOptions(folder)).catch((failure: unknown) => failure);
    expect(error).toMatchObject({ code: "VHD_CHECKSUM_MISMATCH" });
    expect((error as Error).message).toContain("block 5");
    expect((await remote.readFile(`${folder}/d1.vhd`)).equals(await readFile(join(small.dir, "d1.vhd")))).toBe(true);
    expect(await remote.list(folder)).toContain("d1.vhd.blocksums");
    expect(peer.api.openUploads()).toEqual([]);
  }, 300_000);
});
