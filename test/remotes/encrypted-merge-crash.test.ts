/**
 * The VHD merge on an encrypted remote, crashed before every change it makes to the storage: the storage is the merge
 * tests' model of a crash (test/formats/support/memory-merge-storage.ts: unsynced writes lost, all, none or any subset of
 * them kept), seen as a Remote, whose writes in place are moreover split in two halves, so that a crash can keep one half
 * of a write and not the other: a torn encrypted chunk. At each crash the chain must read right through the encrypted
 * remote, and the merge called again must end with exactly the plaintext files of a merge that never crashed, and no
 * journal left (server/remotes/encrypted/, server/repository/FORMAT.md, "Encryption").
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { VhdChain, VhdFile, mergeVhdChain } from "../../server/formats/vhd/index.js";
import { EncryptedRemote, JOURNAL_SUFFIX } from "../../server/remotes/encrypted/encrypted-remote.js";
import { KEY_CHECK_FILE } from "../../server/remotes/encrypted/format.js";
import { RemoteError } from "../../server/remotes/remote-error.js";
import { isTemporaryName } from "../../server/remotes/remote-path.js";
import type { RandomAccessFile, Remote, UpdatableFile } from "../../server/remotes/remote.js";
import { remoteMergeStorage } from "../../server/repository/merge-storage.js";
import { writeSidecar } from "../formats/support/checksums.js";
import { randomWrites, writeDelta } from "../formats/support/delta.js";
import { type CrashPolicy, MemoryMergeStorage, SimulatedCrash } from "../formats/support/memory-merge-storage.js";
import { rawToVhd } from "../formats/support/raw-disk.js";
import { SeededRandom } from "../formats/support/seeded-random.js";
import { tempDir } from "../formats/support/temp-dir.js";

const MiB = 1024 * 1024;
const SECTOR = 512;
const PASSPHRASE = "merge crash passphrase";
const sums = (path: string) => `${path}.blocksums`;
const uuidOf = (n: number) => `00000000-0000-4000-8000-${String(900 + n).padStart(12, "0")}`;

const notFound = (path: string) =>
  new RemoteError({ code: "NOT_FOUND", remote: "memory remote", operation: "open", path, detail: "no such file" });

/** The crash model as a Remote (the few members the encrypted remote and the merge use). */
function memoryRemote(storage: MemoryMergeStorage): Remote {
  const exists = (path: string) => storage.exists(path);
  const source = async (path: string) => {
    if (!(await exists(path))) throw notFound(path);
    return storage.openForRead(path);
  };
  return {
    kind: "LOCAL",
    name: "memory remote",
    open: async () => {},
    close: async () => {},
    async createReadStream(path, range) {
      const file = await source(path);
      const start = Math.min(range?.start ?? 0, file.size);
      const end = Math.min(range?.end ?? file.size - 1, file.size - 1);
      const bytes = end >= start ? await file.read(start, end - start + 1) : Buffer.alloc(0);
      return Readable.from([bytes]);
    },
    async writeStream(path, input) {
      const parts: Buffer[] = [];
      for await (const part of input) parts.push(part as Buffer);
      const bytes = Buffer.concat(parts);
      await storage.writeFileDurably(path, bytes);
      return { bytes: bytes.length };
    },
    writeFile: (path, data) => storage.writeFileDurably(path, data),
    async writeFileExclusive(path, data) {
      if (await exists(path)) return false;
      await storage.writeFileDurably(path, data);
      return true;
    },
    async readFile(path) {
      const bytes = await storage.readFile(path);
      if (bytes === undefined) throw notFound(path);
      return bytes;
    },
    async list(dir, options) {
      const prefix = dir === "" ? "" : `${dir}/`;
      const inside = storage
        .paths()
        .filter((path) => path.startsWith(prefix))
        .map((path) => path.slice(prefix.length));
      return [...new Set(options?.recursive ? inside : inside.map((path) => path.split("/")[0]))].sort();
    },
    async stat(path) {
      return { size: (await source(path)).size, mtime: new Date() };
    },
    async rename(from, to) {
      if (!(await exists(from))) throw notFound(from);
      await storage.rename(from, to);
    },
    async delete(path) {
      if (await exists(path)) await storage.unlink(path);
    },
    deleteTree: async () => {},
    mkdir: async () => {},
    spaceInfo: async () => ({}),
    async openRandomAccess(path): Promise<RandomAccessFile> {
      return source(path);
    },
    isTemporaryName,
    async openForUpdate(path): Promise<UpdatableFile> {
      if (!(await exists(path))) throw notFound(path);
      const file = await storage.openForUpdate(path);
      return {
        get size() {
          return file.size;
        },
        read: (offset, length) => file.read(offset, length),
        // Two writes, so that a crash can keep one half and lose the other: a torn write.
        async write(offset, data) {
          const half = Math.floor(data.length / 2);
          if (half > 0) await file.write(offset, data.subarray(0, half));
          await file.write(offset + half, data.subarray(half));
        },
        truncate: (size) => file.truncate(size),
        sync: () => file.sync(),
        close: () => file.close(),
      };
    },
  };
}

/** A full and 3 deltas of an 11 MiB disk (6 blocks), as plaintext files `vm/dN.vhd` and their `.blocksums`. */
async function buildFixture(dir: string) {
  const random = new SeededRandom(77);
  const size = 11 * MiB + 3 * SECTOR;
  const disk = Buffer.alloc(size);
  randomWrites(disk, random, 6);
  await writeFile(join(dir, "base.raw"), disk);
  const names = ["d0.vhd", "d1.vhd", "d2.vhd", "d3.vhd"];
  await rawToVhd(join(dir, "base.raw"), join(dir, names[0]), size, { uuid: uuidOf(0) });
  for (let n = 1; n < names.length; n++) {
    const touched = randomWrites(disk, random, 10 + random.int(30));
    await writeDelta(join(dir, names[n]), disk, touched, { uuid: uuidOf(n), parentUuid: uuidOf(n - 1) }, random);
  }
  const files = new Map<string, Buffer>();
  for (const name of names) {
    await writeSidecar(join(dir, name));
    files.set(`vm/${name}`, await readFile(join(dir, name)));
    files.set(sums(`vm/${name}`), await readFile(sums(join(dir, name))));
  }
  return { files, names: names.map((name) => `vm/${name}`), finalDisk: Buffer.from(disk) };
}

const mergeOn = (remote: EncryptedRemote) =>
  mergeVhdChain({
    storage: remoteMergeStorage(remote as EncryptedRemote & { openForUpdate: NonNullable<EncryptedRemote["openForUpdate"]> }),
    parent: "vm/d0.vhd",
    child: "vm/d1.vhd",
    parentChecksums: sums("vm/d0.vhd"),
    childChecksums: sums("vm/d1.vhd"),
  });

async function readChain(remote: Remote, paths: string[]): Promise<Buffer> {
  const chain = await VhdChain.openWith(paths.map((path) => async () => VhdFile.openSource(path, await remote.openRandomAccess(path))));
  try {
    return await chain.read(0, chain.virtualSize);
  } finally {
    await chain.close();
  }
}

describe("VHD merge on an encrypted remote, crashed before each change", async () => {
  const dir = await tempDir();
  await mkdir(join(dir, "fixture"));
  const fixture = await buildFixture(join(dir, "fixture"));

  /** A storage holding the fixture encrypted, and the number of changes that took. */
  async function encryptedStorage(): Promise<{ storage: MemoryMergeStorage; remote: EncryptedRemote }> {
    const storage = new MemoryMergeStorage();
    const remote = new EncryptedRemote(memoryRemote(storage), PASSPHRASE);
    for (const [path, bytes] of fixture.files) await remote.writeFile(path, bytes);
    return { storage, remote };
  }

  /** What a merge that never crashed leaves: each file's plaintext. */
  const reference = await (async () => {
    const { storage, remote } = await encryptedStorage();
    const before = storage.changes;
    await mergeOn(remote);
    const files = new Map<string, Buffer>();
    for (const path of await remote.list("vm")) files.set(`vm/${path}`, await remote.readFile(`vm/${path}`));
    return { files, changes: storage.changes - before, paths: storage.paths() };
  })();

  it("merges through the encryption as on plain files: the merged chain reads the last disk, no journal is left", async () => {
    expect([...reference.files.keys()].sort()).toEqual(["d1.vhd", "d2.vhd", "d3.vhd"].flatMap((n) => [`vm/${n}`, sums(`vm/${n}`)]).sort());
    expect(reference.paths.filter((path) => path.endsWith(JOURNAL_SUFFIX))).toEqual([]);
    expect(reference.paths).toContain(KEY_CHECK_FILE);
    const { storage, remote } = await encryptedStorage();
    await mergeOn(remote);
    expect(
      (await readChain(new EncryptedRemote(memoryRemote(storage), PASSPHRASE), ["vm/d1.vhd", "vm/d2.vhd", "vm/d3.vhd"])).equals(
        fixture.finalDisk,
      ),
    ).toBe(true);
  });

  it("reads right at every crash, and resumes to the same plaintext files", { timeout: 600_000 }, async () => {
    const random = new SeededRandom(5);
    const policies: Array<[string, () => CrashPolicy]> = [
      ["none", () => "none"],
      ["all", () => "all"],
      ["random", () => random],
    ];
    expect(reference.changes).toBeGreaterThan(20);
    for (let crashAt = 1; crashAt <= reference.changes; crashAt++) {
      // At each crash: a random subset of the unsynced writes kept, and in turn none or all of them.
      for (const [policyName, policy] of [policies[crashAt % 2], policies[2]]) {
        const moment = `crash before change ${crashAt} of ${reference.changes}, ${policyName} unsynced writes kept`;
        const { storage, remote } = await encryptedStorage();
        storage.crashAt = storage.changes + crashAt;
        const error = await mergeOn(remote).then(
          () => undefined,
          (thrown: unknown) => thrown,
        );
        expect(error, moment).toBeInstanceOf(SimulatedCrash);
        storage.reboot(policy());
        // After the reboot: a new process, a new handle on the remote.
        const fresh = new EncryptedRemote(memoryRemote(storage), PASSPHRASE);
        const listed = (await fresh.list("vm")).filter((name) => name.endsWith(".vhd")).map((name) => `vm/${name}`);
        const chain = listed.includes("vm/d0.vhd") ? fixture.names : fixture.names.filter((path) => path !== "vm/d0.vhd");
        const atCrash = await readChain(fresh, chain).catch((e: Error) => {
          throw new Error(`${moment}: ${e.message}`);
        });
        expect(atCrash.equals(fixture.finalDisk), `chain after ${moment}`).toBe(true);
        await mergeOn(fresh);
        const files = (await fresh.list("vm")).map((name) => `vm/${name}`).sort();
        expect(files, moment).toEqual([...reference.files.keys()].sort());
        for (const [path, bytes] of reference.files)
          expect((await fresh.readFile(path)).equals(bytes), `${path} after ${moment}`).toBe(true);
        expect(
          storage.paths().filter((path) => path.endsWith(JOURNAL_SUFFIX)),
          `journals after ${moment}`,
        ).toEqual([]);
      }
    }
  });
});
