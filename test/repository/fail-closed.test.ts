import { randomUUID } from "node:crypto";
import { cp } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { LocalRemote } from "../../server/remotes/local-remote.js";
import type { Remote } from "../../server/remotes/remote.js";
import { openBackupDisk } from "../../server/repository/chain-source.js";
import { cleanRepository } from "../../server/repository/cleaner.js";
import { applyRetention } from "../../server/repository/retention.js";
import { scanRepository } from "../../server/repository/scanner.js";
import { faultyRemote } from "./support/faulty-remote.js";
import { tempFolder } from "../support/temp-folder.js";
import { HOUR, MiB, SimulatedDisk, T0, withoutLocalFiles, writeDeltaBackup } from "./support/fixtures.js";

/**
 * Fail closed: one read that fails anywhere in a retention or a clean (a flaky disk, a dropped connection) must never cost a
 * kept backup. Each test builds one repository, then for every read k of the operation runs it on a fresh copy with read k
 * failing, and checks that every backup the rules keep is still listed and reads byte for byte what its disk held.
 */

interface Repository {
  dir: string;
  vmUuid: string;
  jobId: string;
  scheduleId: string;
  /** timestamp -> VDI uuid -> content */
  contents: Map<number, Map<string, Buffer>>;
}

const tempDir = () => tempFolder("cairn-fail-closed-");

/** Claims retried at once: a test does not wait through the lock's production back-off. */
const QUICK_LOCK = { backoffMs: { min: 1, max: 2 } };

/** Six backups of two small disks (a full every 4), nothing removed yet. */
async function buildRepository(seed: number): Promise<Repository> {
  const dir = await tempDir();
  const remote = new LocalRemote(dir);
  const repo: Repository = { dir, vmUuid: randomUUID(), jobId: randomUUID(), scheduleId: randomUUID(), contents: new Map() };
  const disks = [new SimulatedDisk(randomUUID(), 4 * MiB, seed), new SimulatedDisk(randomUUID(), 2 * MiB, seed + 1)];
  for (let n = 0; n < 6; n++) {
    if (n > 0) for (const disk of disks) disk.scribble(6);
    const timestamp = T0 + n * HOUR;
    repo.contents.set(timestamp, await writeDeltaBackup(remote, { ...repo, disks, timestamp, kind: n % 4 === 0 ? "full" : "delta" }));
  }
  return repo;
}

async function copyOf(repo: Repository): Promise<LocalRemote> {
  const dir = await tempDir();
  await cp(repo.dir, dir, { recursive: true });
  return new LocalRemote(dir);
}

/** Every listed backup reads exactly what was written, verified against its block checksums; returns their times. */
async function listedAndExact(remote: Remote, repo: Repository): Promise<number[]> {
  const { backups } = await scanRepository(remote, { vmUuid: repo.vmUuid });
  for (const backup of backups) {
    for (const disk of backup.disks) {
      const chain = await openBackupDisk(remote, disk);
      try {
        const bytes = await chain.read(0, chain.virtualSize);
        expect(
          bytes.equals(repo.contents.get(backup.timestamp)?.get(disk.vdiUuid) as Buffer),
          `${backup.metadataPath} disk ${disk.vdiUuid}`,
        ).toBe(true);
      } finally {
        await chain.close();
      }
    }
  }
  return backups.map((backup) => backup.timestamp).sort((a, b) => a - b);
}

const KEEP = 2;

for (const kind of ["LOCAL (merges in place)", "without local files (as on SMB or S3)"] as const) {
  const view = (remote: Remote) => (kind.startsWith("LOCAL") ? remote : withoutLocalFiles(remote));

  describe(`fail closed on a remote ${kind}`, () => {
    it("retention: a failed read at any point loses no kept backup, and the next retention finishes the work", {
      timeout: 600_000,
    }, async () => {
      const repo = await buildRepository(kind.length);
      const kept = [...repo.contents.keys()].sort((a, b) => a - b).slice(-KEEP);
      let failures = 0;
      for (let k = 1; ; k++) {
        const remote = view(await copyOf(repo));
        const faulty = faultyRemote(remote, k);
        const outcome = await applyRetention(faulty.remote, { ...repo, keep: KEEP, minAgeMs: 0, lock: QUICK_LOCK }).then(
          (result) => result.problems.join("\n"),
          (error: Error) => error.message,
        );
        if (!faulty.failed) break; // k is past the last read: every read has had its turn
        // A failure is either reported, or was absorbed by a retry (the lock's claim reads retry transient errors)
        if (/injected I\/O error/.test(outcome)) failures++;
        const listed = await listedAndExact(remote, repo);
        expect(listed, `read ${k} failed: every kept backup is still listed`).toEqual(expect.arrayContaining(kept));
        const again = await applyRetention(remote, { ...repo, keep: KEEP, minAgeMs: 0 });
        expect(
          again.problems.filter((p) => !/merges are not available/.test(p)),
          `read ${k}: the next retention has nothing to report`,
        ).toEqual([]);
        expect(await listedAndExact(remote, repo)).toEqual(kept);
      }
      console.log(
        `retention ${kind}: ${failures} reads failed one at a time (each reported; others were absorbed by a retry), no kept backup lost`,
      );
      expect(failures).toBeGreaterThan(20);
    });

    it("clean: a failed read at any point loses no backup", { timeout: 600_000 }, async () => {
      const repo = await buildRepository(100 + kind.length);
      // Remove the oldest metadata by hand, as a crash right after retention's first step would leave it.
      const base = await copyOf(repo);
      const oldest = (await scanRepository(base, { vmUuid: repo.vmUuid })).backups.slice(0, 3);
      for (const backup of oldest) await base.delete(backup.metadataPath);
      const survivors = [...repo.contents.keys()].sort((a, b) => a - b).slice(3);
      const prepared: Repository = { ...repo, dir: base.root };
      let failures = 0;
      for (let k = 1; ; k++) {
        const remote = view(await copyOf(prepared));
        const faulty = faultyRemote(remote, k);
        const outcome = await cleanRepository(faulty.remote, { vmUuid: repo.vmUuid, minAgeMs: 0, lock: QUICK_LOCK }).then(
          (result) => result.problems.join("\n"),
          (error: Error) => error.message,
        );
        if (!faulty.failed) break;
        if (/injected I\/O error/.test(outcome)) failures++;
        expect(await listedAndExact(remote, repo), `read ${k} failed: every backup is still listed`).toEqual(survivors);
      }
      console.log(`clean ${kind}: ${failures} reads failed one at a time (each reported; others were absorbed by a retry), no backup lost`);
      expect(failures).toBeGreaterThan(10);
    });
  });
}

describe("a VM folder with a file that cannot be read", () => {
  it("retention deletes and merges nothing there, says which file and why, and works again once the file reads", async () => {
    const repo = await buildRepository(7);
    const remote = await copyOf(repo);
    const { backups } = await scanRepository(remote, { vmUuid: repo.vmUuid });
    const root = backups[0].disks[0].chain[0];
    const saved = await remote.readFile(root);
    await remote.writeFile(root, saved.subarray(0, saved.length - 512)); // the footer is gone: not a readable VHD
    const before = (await remote.list("", { recursive: true })).sort();
    const result = await applyRetention(remote, { ...repo, keep: KEEP, minAgeMs: 0 });
    expect(result.deleted).toEqual([]);
    expect(result.deletedFiles).toEqual([]);
    expect(result.merged).toEqual([]);
    expect(result.problems.join("\n")).toContain(
      `nothing was deleted or merged, because a file of this VM's backups could not be read: ${root}`,
    );
    expect((await remote.list("", { recursive: true })).sort()).toEqual(before);

    await remote.writeFile(root, saved);
    const after = await applyRetention(remote, { ...repo, keep: KEEP, minAgeMs: 0 });
    expect(after.problems).toEqual([]);
    expect(await listedAndExact(remote, repo)).toEqual([...repo.contents.keys()].sort((a, b) => a - b).slice(-KEEP));
  });
});
