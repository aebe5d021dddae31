/**
 * cancelRun during a slowed transfer: the run ends CANCELLED within seconds, nothing of it stays on the remote (no partial
 * file, no temporary file, no lock, no metadata) or in the index (no restore point), its snapshot is removed from the pool,
 * and the next run of the job succeeds.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";

/** Every file under a folder, relative to it ([] when the folder does not exist). */
function filesUnder(folder: string): string[] {
  if (!fs.existsSync(folder)) return [];
  return (fs.readdirSync(folder, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(folder, path.join(entry.parentPath, entry.name)))
    .sort();
}

const CANCEL_LIMIT_MS = 5_000;

describe("cancelRun during a transfer", () => {
  let f: BackupFixture;
  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 32 });
  });
  afterAll(() => f?.stop());

  it.each(["FULL", "DELTA"])("stops a %s run within seconds, leaves no partial file, restore point or snapshot, and the next run succeeds", async (mode) => {
    const vm = f.vm("db-data");
    const job = await f.createJob({
      name: `cancel ${mode}`,
      mode,
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 3 }],
    });
    const vmFolder = `${f.remoteDir}/xo-vm-backups/${vm.uuid}`;
    const filesBefore = filesUnder(vmFolder);
    await f.setFault("export_bytes_per_second", { rate: 512 * 1024 });
    try {
      const runId = await f.startRun(job.id, job.schedules[0].id);
      const running = await f.waitForRun(runId, (run) => run.tasks.some((t: { kind: string; status: string; progress: number }) => t.kind === "transfer" && t.status === "RUNNING" && t.progress > 0));
      // The transfer is writing: a temporary file exists on the remote now.
      expect(filesUnder(vmFolder).filter((name) => !filesBefore.includes(name)).length).toBeGreaterThan(0);
      const snapshotsDuring = await f.jobSnapshots(job.id, vm.uuid);
      expect(snapshotsDuring.map((s) => (s.other_config as Record<string, string>)["cairn:run"])).toContain(runId);

      const asked = Date.now();
      const cancelled = await f.gql<any>("mutation($id: ID!) { cancelRun(id: $id) { id status } }", { id: running.id });
      expect(cancelled.cancelRun.id).toBe(runId);
      const ended = await f.waitForEnd(runId, 30_000);
      const took = Date.now() - asked;
      expect(ended.status, JSON.stringify(ended.tasks, null, 1)).toBe("CANCELLED");
      expect(took).toBeLessThan(CANCEL_LIMIT_MS);
      expect(ended.error).toMatch(/cancel/i);
      // No task of the run stays RUNNING; the VM's task says it was cancelled (not that it failed).
      expect(ended.tasks.filter((t: { status: string }) => t.status === "RUNNING")).toEqual([]);
      expect(ended.tasks.find((t: { kind: string }) => t.kind === "vm").status).toBe("CANCELLED");
      // What the cancel stopped (the export, the transfer) says so, with the run's message; nothing claims to have failed.
      for (const kind of ["export", "transfer"]) {
        const stopped = ended.tasks.filter((t: { kind: string }) => t.kind === kind);
        expect(stopped.length, kind).toBeGreaterThan(0);
        for (const task of stopped) expect(task, kind).toMatchObject({ status: "CANCELLED", message: ended.error });
      }
      expect(ended.tasks.filter((t: { status: string }) => t.status === "FAILURE")).toEqual([]);

      expect(filesUnder(vmFolder)).toEqual(filesBefore);
      expect(fs.existsSync(`${f.remoteDir}/xo-vm-backups/.cairn-locks/${vm.uuid}`) ? fs.readdirSync(`${f.remoteDir}/xo-vm-backups/.cairn-locks/${vm.uuid}`).filter((n) => n.endsWith(".json")) : []).toEqual([]);
      expect(await f.restorePoints(job.id)).toEqual([]);
      expect(await f.jobSnapshots(job.id, vm.uuid)).toEqual([]);
    } finally {
      await f.clearFaults();
    }

    const next = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(next);
    const points = await f.restorePoints(job.id);
    expect(points).toHaveLength(1);
    expect(points[0].run.id).toBe(next.id);
  });

  it.each(["FULL", "DELTA"])("stops a %s run cancelled as soon as its snapshot starts, with nothing left behind", async (mode) => {
    const vm = f.vm("win-fat");
    const job = await f.createJob({ name: `cancel early ${mode}`, mode, selection: { vmUuids: [vm.uuid] }, remoteIds: [f.remoteId], schedules: [{ cron: "0 3 * * *", exportRetention: 3 }] });
    const vmFolder = `${f.remoteDir}/xo-vm-backups/${vm.uuid}`;
    const filesBefore = filesUnder(vmFolder);
    await f.setFault("export_bytes_per_second", { rate: 512 * 1024 });
    try {
      const runId = await f.startRun(job.id, job.schedules[0].id);
      await f.waitForRun(runId, (run) => run.tasks.some((t: { kind: string }) => t.kind === "snapshot"));
      const asked = Date.now();
      await f.gql("mutation($id: ID!) { cancelRun(id: $id) { id } }", { id: runId });
      const ended = await f.waitForEnd(runId, 30_000);
      expect(ended.status, JSON.stringify(ended.tasks, null, 1)).toBe("CANCELLED");
      expect(Date.now() - asked).toBeLessThan(CANCEL_LIMIT_MS);
      expect(filesUnder(vmFolder)).toEqual(filesBefore);
      expect(await f.restorePoints(job.id)).toEqual([]);
      expect(await f.jobSnapshots(job.id, vm.uuid)).toEqual([]);
    } finally {
      await f.clearFaults();
    }
  });
});
