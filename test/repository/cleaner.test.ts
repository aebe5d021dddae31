import { randomUUID } from "node:crypto";
import { utimes } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { LocalRemote } from "../../server/remotes/local-remote.js";
import { describe, expect, it } from "vitest";
import { beginBackup } from "../../server/repository/backup-writer.js";
import { cleanRepository } from "../../server/repository/cleaner.js";
import { applyRetention } from "../../server/repository/retention.js";
import { scanRepository } from "../../server/repository/scanner.js";
import { HOUR, MiB, SimulatedDisk, T0, filesUnder, readDisk, tempRemote, writeDeltaBackup } from "./support/fixtures.js";

const JOB = randomUUID();
const SCHEDULE = randomUUID();
/** Sets the mtime of every file under `dir` 11 minutes back: what the remote shows of a process that stopped that long ago. */
async function ageEverything(remote: LocalRemote, dir: string): Promise<void> {
  const past = new Date(Date.now() - 11 * 60 * 1000);
  for (const file of await remote.list(dir, { recursive: true })) await utimes(join(remote.root, dir, file), past, past);
}

describe("cleanRepository", async () => {
  it("removes temporary files and unreferenced VHDs and XVAs of a writer that died, and never a committed backup", async () => {
    const remote = await tempRemote();
    const vmUuid = randomUUID();
    const disk = new SimulatedDisk(randomUUID(), 8 * MiB, 5);
    const contents = new Map<number, Buffer>();
    for (let n = 0; n < 3; n++) {
      if (n > 0) disk.scribble(4);
      const written = await writeDeltaBackup(remote, {
        vmUuid,
        jobId: JOB,
        scheduleId: SCHEDULE,
        timestamp: T0 + n * HOUR,
        disks: [disk],
        kind: n === 0 ? "full" : "delta",
      });
      contents.set(T0 + n * HOUR, written.get(disk.vdiUuid) as Buffer);
    }
    const before = await scanRepository(remote);
    // a writer that died after writing one disk (its lock is never refreshed) and a temporary file of an interrupted write
    disk.scribble(4);
    const dead = await beginBackup(remote, { vmUuid, timestamp: T0 + 3 * HOUR, mode: "delta", jobId: JOB, lock: { autoRenew: false } });
    const orphan = await dead.writeDisk(disk.vdiUuid, disk.export("delta").stream);
    const tmp = `xo-vm-backups/${vmUuid}/vdis/${JOB}/${disk.vdiUuid}/.20250201T030003Z.vhd.tmp-0123456789abcdef`;
    await remote.writeFile(tmp, "partial");
    const orphanXva = `xo-vm-backups/${vmUuid}/20250101T000000Z.xva`;
    await remote.writeFile(orphanXva, "no metadata names me");

    // right away: the dead writer's lock still looks live, so the VM is skipped and nothing goes
    const early = await cleanRepository(remote);
    expect(early.deletedFiles).toEqual([]);
    expect(early.problems.join("\n")).toMatch(/not cleaned this time: LOCKED/);

    // eleven minutes later, by the remote's clock, the lock is stale and the leftovers are old enough
    await ageEverything(remote, "xo-vm-backups");
    const result = await cleanRepository(remote);
    expect(result.problems).toEqual([]);
    expect(result.deletedFiles.sort()).toEqual([orphan.remotePath, `${orphan.remotePath}.blocksums`, tmp, orphanXva].sort());
    const after = await scanRepository(remote);
    expect(after.backups.map((b) => b.metadataPath)).toEqual(before.backups.map((b) => b.metadataPath));
    for (const backup of after.backups)
      expect((await readDisk(remote, backup.disks[0].chain)).equals(contents.get(backup.timestamp) as Buffer)).toBe(true);
    expect((await filesUnder(remote, `xo-vm-backups/${vmUuid}`)).filter((f) => f.endsWith(".vhd"))).toHaveLength(3);
  });

  it("leaves alone the files of a live writer (it holds the lock) and fresh leftovers", async () => {
    const remote = await tempRemote();
    const vmUuid = randomUUID();
    const writer = await beginBackup(remote, { vmUuid, timestamp: T0, mode: "full", jobId: JOB });
    const xva = await writer.writeXva(Readable.from([Buffer.alloc(4096)]));
    // even with no age limit, the held lock protects the writer's files
    const result = await cleanRepository(remote, { vmUuid, minAgeMs: 0 });
    expect(result.deletedFiles).toEqual([]);
    expect(result.problems.join("\n")).toMatch(/not cleaned this time: LOCKED: .*backup 20250131T220003Z of job .*.* holds the backups/);
    expect(await filesUnder(remote, `xo-vm-backups/${vmUuid}`)).toEqual([xva.remotePath.split("/").pop()]);
    await writer.commit({ scheduleId: SCHEDULE, vm: {}, vmSnapshot: {}, cairn: { quiesced: true, compression: "none" } });
    // a fresh unreferenced file is kept: it may belong to a writer whose lock was lost moments ago
    await remote.writeFile(`xo-vm-backups/${vmUuid}/20250101T000000Z.xva`, "x");
    expect((await cleanRepository(remote, { vmUuid })).deletedFiles).toEqual([]);
    expect((await scanRepository(remote)).backups).toHaveLength(1);
  });

  it("finishes a merge a crashed retention left half done", async () => {
    const remote = await tempRemote();
    const vmUuid = randomUUID();
    const disk = new SimulatedDisk(randomUUID(), 8 * MiB, 8);
    const contents = new Map<number, Buffer>();
    for (let n = 0; n < 3; n++) {
      if (n > 0) disk.scribble(6);
      const written = await writeDeltaBackup(remote, {
        vmUuid,
        jobId: JOB,
        scheduleId: SCHEDULE,
        timestamp: T0 + n * HOUR,
        disks: [disk],
        kind: n === 0 ? "full" : "delta",
      });
      contents.set(T0 + n * HOUR, written.get(disk.vdiUuid) as Buffer);
    }
    const crashed = await applyRetention(remote, {
      vmUuid,
      jobId: JOB,
      scheduleId: SCHEDULE,
      keep: 2,
      onMergeStep: ({ step }) => {
        if (step.kind === "block") throw new Error("power cut");
      },
    });
    expect(crashed.problems.join("\n")).toContain("power cut");
    expect((await filesUnder(remote)).some((f) => f.endsWith(".merge.json"))).toBe(true);
    const result = await cleanRepository(remote);
    expect(result.merged).toHaveLength(1);
    expect(result.merged[0].resumed).toBe(true);
    const after = await scanRepository(remote);
    expect(after.problems).toEqual([]);
    expect(after.backups).toHaveLength(2);
    for (const backup of after.backups) {
      expect(backup.disks[0].chain).toHaveLength(backup.timestamp === T0 + HOUR ? 1 : 2);
      expect((await readDisk(remote, backup.disks[0].chain)).equals(contents.get(backup.timestamp) as Buffer)).toBe(true);
    }
  });
});
