/**
 * cancelRun during a slowed transfer: the run ends CANCELLED (it stops, it does not finish the transfer), nothing of it stays on the remote (no partial
 * file, no temporary file, no lock, no metadata) or in the index (no restore point), its snapshot is removed from the pool,
 * and the next run of the job succeeds.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { graphql } from "../support/graphql.js";

/** Every file under a folder, relative to it ([] when the folder does not exist). */
function filesUnder(folder: string): string[] {
  if (!fs.existsSync(folder)) return [];
  return (fs.readdirSync(folder, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(folder, path.join(entry.parentPath, entry.name)))
    .sort();
}

/**
 * Only bounds a hang. Whether the cancel worked is the run's status: the throttled export would take about a minute, so a
 * run the cancel did not stop ends SUCCESS, not CANCELLED.
 */
const CANCEL_HANG_MS = 120_000;
/** A whole test: a cancelled run, its cleanup and a full next run, on a busy machine. Only bounds a hang. */
const TEST_HANG_MS = 300_000;

describe("cancelRun during a transfer", () => {
  let f: BackupFixture;
  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 32 });
  });
  afterAll(() => f?.stop());

  it.each(["FULL", "DELTA"])(
    "stops a %s run, leaves no partial file, restore point or snapshot, and the next run succeeds",
    async (mode) => {
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
        const running = await f.waitForRun(runId, (run) =>
          run.tasks.some(
            (t: { kind: string; status: string; progress: number }) => t.kind === "transfer" && t.status === "RUNNING" && t.progress > 0,
          ),
        );
        // The transfer is writing: a temporary file exists on the remote now.
        expect(filesUnder(vmFolder).filter((name) => !filesBefore.includes(name)).length).toBeGreaterThan(0);
        const snapshotsDuring = await f.jobSnapshots(job.id, vm.uuid);
        expect(snapshotsDuring.map((s) => (s.other_config as Record<string, string>)["cairn:run"])).toContain(runId);

        const cancelled = await f.gql(graphql("mutation($id: ID!) { cancelRun(id: $id) { id status } }"), { id: running.id });
        expect(cancelled.cancelRun.id).toBe(runId);
        const ended = await f.waitForEnd(runId, CANCEL_HANG_MS);
        expect(ended.status, JSON.stringify(ended.tasks, null, 1)).toBe("CANCELLED");
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
        expect(
          fs.existsSync(`${f.remoteDir}/xo-vm-backups/.cairn-locks/${vm.uuid}`)
            ? fs.readdirSync(`${f.remoteDir}/xo-vm-backups/.cairn-locks/${vm.uuid}`).filter((n) => n.endsWith(".json"))
            : [],
        ).toEqual([]);
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
    },
    TEST_HANG_MS,
  );

  it.each(["FULL", "DELTA"])(
    "stops a %s run cancelled as soon as its snapshot starts, with nothing left behind",
    async (mode) => {
      const vm = f.vm("win-fat");
      const job = await f.createJob({
        name: `cancel early ${mode}`,
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
        await f.waitForRun(runId, (run) => run.tasks.some((t: { kind: string }) => t.kind === "snapshot"));
        await f.gql("mutation($id: ID!) { cancelRun(id: $id) { id } }", { id: runId });
        const ended = await f.waitForEnd(runId, CANCEL_HANG_MS);
        expect(ended.status, JSON.stringify(ended.tasks, null, 1)).toBe("CANCELLED");
        expect(filesUnder(vmFolder)).toEqual(filesBefore);
        expect(await f.restorePoints(job.id)).toEqual([]);
        expect(await f.jobSnapshots(job.id, vm.uuid)).toEqual([]);
      } finally {
        await f.clearFaults();
      }
    },
    TEST_HANG_MS,
  );
});
