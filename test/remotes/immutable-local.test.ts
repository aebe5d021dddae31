/**
 * Immutability on a LOCAL remote, for real (Cairn runs as root here, on ext4): a backup's files carry the immutable
 * attribute once it is complete, so plain fs calls (root's included) can neither write, rename nor delete them; retention
 * and removal leave the backup alone until its window ends, then lift the attribute and remove it. The end of the window is
 * simulated with retention's injected clock (the backups are dated 2025, the window counted from then): no sleeps.
 * Every folder is released (`chattr -R -i`) before it is removed: an immutable file left behind would break every later run.
 */
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LocalRemote } from "../../server/remotes/local-remote.js";
import { Readable } from "node:stream";
import { beginBackup } from "../../server/repository/backup-writer.js";
import { cleanRepository } from "../../server/repository/cleaner.js";
import { parseBackupMetadata } from "../../server/repository/metadata.js";
import { applyRetention, removeBackup } from "../../server/repository/retention.js";
import { HOUR, MiB, SimulatedDisk, vmRecord, writeDeltaBackup } from "../repository/support/fixtures.js";

const DAY = 24 * HOUR;
const WINDOW_DAYS = 30;
/**
 * The backups' time: tomorrow 22:00 UTC, so that their windows are not over by the file system's clock when they are
 * written (a window already over protects nothing); the ends of windows are then played with an injected clock.
 */
const T0 = Math.ceil(Date.now() / (24 * HOUR)) * 24 * HOUR + 22 * HOUR + 3_000;
/** A time as the run's warnings and refusals say it. */
const readable = (ms: number) => `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")} UTC`;
const folders: string[] = [];

afterAll(async () => {
  for (const folder of folders) {
    execFileSync("chattr", ["-R", "-i", folder]);
    await fs.rm(folder, { recursive: true, force: true });
  }
});

async function immutableRemote(): Promise<LocalRemote> {
  const folder = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-immutable-"));
  folders.push(folder);
  const remote = new LocalRemote(folder);
  remote.immutabilityDays = WINDOW_DAYS;
  return remote;
}

async function filesOf(root: string): Promise<string[]> {
  const entries = await fs.readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)))
    .filter((file) => !file.includes(".cairn-locks"))
    .sort();
}

function hasImmutableAttribute(file: string): boolean {
  return execFileSync("lsattr", ["-d", "--", file], { encoding: "utf8" }).trim().split(/\s+/)[0].includes("i");
}

async function expectEperm(what: string, action: () => Promise<unknown>): Promise<void> {
  await expect(action(), what).rejects.toMatchObject({ code: "EPERM" });
}

describe("LOCAL immutability", () => {
  it("checks that it can protect a file (root, ext4) and leaves no probe behind", async () => {
    const remote = await immutableRemote();
    await remote.checkImmutability();
    expect(await filesOf(remote.root)).toEqual([]);
  });

  it("makes every file of a complete backup immutable: no write, rename or delete, root's plain fs calls included", async () => {
    const remote = await immutableRemote();
    const plan = {
      vmUuid: randomUUID(),
      jobId: randomUUID(),
      scheduleId: randomUUID(),
      disks: [new SimulatedDisk(randomUUID(), 4 * MiB, 3)],
    };
    await writeDeltaBackup(remote, { ...plan, timestamp: T0, kind: "full" });

    const files = await filesOf(remote.root);
    const backupFiles = files.filter((file) => !file.endsWith("cache.json.gz"));
    expect(backupFiles.some((file) => file.endsWith(".json"))).toBe(true);
    expect(backupFiles.some((file) => file.endsWith(".vhd"))).toBe(true);
    expect(backupFiles.some((file) => file.endsWith(".vhd.blocksums"))).toBe(true);
    const metadataFile = backupFiles.find((file) => file.endsWith(".json")) as string;
    const metadata = parseBackupMetadata(await fs.readFile(path.join(remote.root, metadataFile), "utf8"), metadataFile);
    expect(metadata.cairn?.immutableUntil).toBe(new Date(T0 + WINDOW_DAYS * DAY).toISOString());

    for (const file of backupFiles) {
      const absolute = path.join(remote.root, file);
      expect(hasImmutableAttribute(absolute), file).toBe(true);
      await expectEperm(`write ${file}`, () => fs.writeFile(absolute, "ransom"));
      await expectEperm(`append to ${file}`, () => fs.appendFile(absolute, "ransom"));
      await expectEperm(`rename ${file}`, () => fs.rename(absolute, `${absolute}.encrypted`));
      await expectEperm(`delete ${file}`, () => fs.unlink(absolute));
    }
    // Through the remote too: Cairn cannot delete it either.
    await expect(remote.delete(metadataFile)).rejects.toMatchObject({ code: "PERMISSION_DENIED" });
  });

  it("keeps a protected backup through retention, removal and the cleaner, then lifts and removes it once the window has passed", async () => {
    const remote = await immutableRemote();
    const plan = {
      vmUuid: randomUUID(),
      jobId: randomUUID(),
      scheduleId: randomUUID(),
      disks: [new SimulatedDisk(randomUUID(), 4 * MiB, 5)],
    };
    await writeDeltaBackup(remote, { ...plan, timestamp: T0, kind: "full" });
    const before = await filesOf(remote.root);
    const metadataPath = before.find((file) => file.endsWith(".json")) as string;
    const during = async () => new Date(T0 + 2 * DAY);
    const after = async () => new Date(T0 + (WINDOW_DAYS + 1) * DAY);

    const kept = await applyRetention(remote, { ...plan, keep: 0, clock: during });
    expect(kept.deleted).toEqual([]);
    expect(kept.problems).toEqual([`kept web-01's backup of ${readable(T0)}: immutable until ${readable(T0 + WINDOW_DAYS * DAY)}`]);
    expect(await filesOf(remote.root)).toEqual(before);

    await expect(removeBackup(remote, { vmUuid: plan.vmUuid, metadataPath, clock: during })).rejects.toThrow(
      `web-01's backup of ${readable(T0)} is immutable until ${readable(T0 + WINDOW_DAYS * DAY)}: nobody can remove it before then`,
    );

    const cleaned = await cleanRepository(remote, { clock: during, minAgeMs: 0 });
    expect(cleaned.deletedFiles).toEqual([]);
    expect(await filesOf(remote.root)).toEqual(before);

    const removed = await applyRetention(remote, { ...plan, keep: 0, clock: after });
    expect(removed.problems).toEqual([]);
    expect(removed.deleted).toEqual([metadataPath]);
    expect((await filesOf(remote.root)).filter((file) => !file.endsWith("cache.json.gz"))).toEqual([]);
  });

  it("dates the window from the target remote alone: a copied backup's own until-date is never carried over", async () => {
    const plain = await immutableRemote();
    plain.immutabilityDays = 0;
    const copy = async (remote: LocalRemote) => {
      const vmUuid = randomUUID();
      const writer = await beginBackup(remote, { vmUuid, timestamp: T0, mode: "full", jobId: randomUUID() });
      await writer.writeXva(Readable.from([Buffer.from("an xva")]));
      const metadata = await writer.commit({
        scheduleId: randomUUID(),
        vm: vmRecord(vmUuid),
        vmSnapshot: vmRecord(randomUUID()),
        cairn: { quiesced: true, compression: "none", immutableUntil: "2099-01-01T00:00:00.000Z" },
      });
      return metadata.cairn?.immutableUntil;
    };
    expect(await copy(plain)).toBeUndefined();
    expect(await copy(await immutableRemote())).toBe(new Date(T0 + WINDOW_DAYS * DAY).toISOString());
  });
});
