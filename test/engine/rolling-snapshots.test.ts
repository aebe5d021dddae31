/**
 * ROLLING_SNAPSHOT jobs keep the newest `snapshotRetention` snapshots of each VM on its pool (as XAPI shows them), one
 * SNAPSHOT restore point per kept snapshot, and the disks of removed snapshots are destroyed with them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";

describe("ROLLING_SNAPSHOT jobs against the lab", () => {
  let f: BackupFixture;
  beforeAll(async () => {
    f = await startBackupFixture();
  });
  afterAll(() => f?.stop());

  it("keeps exactly snapshotRetention snapshots and restore points over 4 runs, and destroys the disks of the removed ones", async () => {
    const vm = f.vm("web-ext4");
    const job = await f.createJob({
      name: "rolling",
      mode: "ROLLING_SNAPSHOT",
      selection: { vmUuids: [vm.uuid] },
      schedules: [{ cron: "0 * * * *", snapshotRetention: 2 }],
    });
    const snapshotsSeen: { uuid: string; disks: string[] }[] = [];
    for (let i = 0; i < 4; i++) {
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expectSuccess(run);
      const snapshots = await f.jobSnapshots(job.id, vm.uuid);
      // The newest snapshot is this run's.
      const newest = snapshots.at(-1)!;
      expect((newest.other_config as Record<string, string>)["cairn:run"]).toBe(run.id);
      snapshotsSeen.push({ uuid: newest.uuid, disks: f.diskRefs(newest.$ref) });
      expect(snapshots).toHaveLength(Math.min(i + 1, 2));
    }

    const kept = await f.jobSnapshots(job.id, vm.uuid);
    expect(kept.map((s) => s.uuid)).toEqual(snapshotsSeen.slice(2).map((s) => s.uuid));

    const points = await f.restorePoints(job.id);
    expect(points).toHaveLength(2);
    for (const point of points) expect(point.kind).toBe("SNAPSHOT");
    expect(points.map((p: { vmUuid: string }) => p.vmUuid)).toEqual([vm.uuid, vm.uuid]);
    // One restore point per kept snapshot, none for the removed ones.
    const { createPrismaClient } = await import("../../server/db/prisma.js");
    const db = createPrismaClient(f.server.database.url);
    try {
      const rows = await db.restorePoint.findMany({ where: { jobId: job.id }, select: { objectUuid: true } });
      expect(rows.map((r) => r.objectUuid).sort()).toEqual(kept.map((s) => s.uuid).sort());
    } finally {
      await db.$disconnect();
    }

    // The removed snapshots are gone from the pool, and so are their disks; the kept ones still have theirs.
    await f.xapi.barrier();
    for (const removed of snapshotsSeen.slice(0, 2)) {
      expect(Object.values(f.xapi.objects.all).find((o) => o.$type === "VM" && o.uuid === removed.uuid)).toBeUndefined();
      expect(removed.disks.length).toBeGreaterThan(0);
      for (const vdi of removed.disks)
        expect(f.xapi.getObjectByRef(vdi, undefined), `disk ${vdi} of removed snapshot ${removed.uuid}`).toBeUndefined();
    }
    for (const snapshot of kept) for (const vdi of f.diskRefs(snapshot.$ref)) expect(f.xapi.getObjectByRef(vdi, undefined)).toBeDefined();
    // The VM's own disks are untouched.
    expect(f.diskRefs(vm.ref).length).toBeGreaterThan(0);
  });

  it("counts snapshotRetention per schedule: each schedule keeps its own newest N", async () => {
    const vm = f.vm("win-fat");
    const job = await f.createJob({
      name: "rolling, two schedules",
      mode: "ROLLING_SNAPSHOT",
      selection: { vmUuids: [vm.uuid] },
      schedules: [
        { name: "hourly", cron: "0 * * * *", snapshotRetention: 2 },
        { name: "daily", cron: "0 3 * * *", snapshotRetention: 1 },
      ],
    });
    const [hourly, daily] = job.schedules.map((s) => s.id);
    for (const scheduleId of [hourly, daily, hourly, daily, hourly]) expectSuccess(await f.runToEnd(job.id, scheduleId));
    const kept = await f.jobSnapshots(job.id, vm.uuid);
    const bySchedule = (id: string) => kept.filter((s) => (s.other_config as Record<string, string>)["xo:backup:schedule"] === id);
    expect(bySchedule(hourly)).toHaveLength(2);
    expect(bySchedule(daily)).toHaveLength(1);
    const points = await f.restorePoints(job.id);
    expect(points).toHaveLength(3);
    expect(points.every((p: { kind: string }) => p.kind === "SNAPSHOT")).toBe(true);
  });
});
