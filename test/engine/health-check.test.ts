import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { eventually } from "../support/eventually.js";
import { graphql } from "../support/graphql.js";

type Rec = Record<string, any>;

describe("health checks against the lab", () => {
  let f: BackupFixture;
  let srs: { uuid: string; name: string }[];

  beforeAll(async () => {
    f = await startBackupFixture({ labPools: 1 });
    srs = (await f.gql<{ pools: { srs: { uuid: string; name: string }[] }[] }>("{ pools { srs { uuid name } } }")).pools[0].srs;
  });
  afterAll(async () => {
    await f?.stop();
  });

  const srOf = (name: string) => srs.find((sr) => sr.name === name)!.uuid;

  /** Every VM that is not a snapshot, template or control domain, and the count of disks that are not snapshots. */
  async function inventory() {
    await f.xapi.barrier();
    const all = Object.values(f.xapi.objects.all) as Rec[];
    return {
      vms: all
        .filter((o) => o.$type === "VM" && !o.is_a_snapshot && !o.is_a_template && !o.is_control_domain)
        .map((o) => o.uuid)
        .sort(),
      // Disks of VMs (a backup's snapshot disks are left out: a delta keeps its snapshot as the next base).
      vdis: all.filter((o) => o.$type === "VDI" && !o.is_a_snapshot).length,
    };
  }

  async function check(pointId: string) {
    const data = await f.gql<{ checkRestorePoint: { id: string } }>("mutation($id: ID!) { checkRestorePoint(id: $id) { id } }", {
      id: pointId,
    });
    return f.waitForEnd(data.checkRestorePoint.id);
  }

  async function verification(pointId: string) {
    return (await f.gql(graphql("query($id: ID!) { restorePoint(id: $id) { verification { status checkedAt error } } }"), { id: pointId }))
      .restorePoint!.verification;
  }

  async function onePoint(job: { id: string; schedules: { id: string }[] }, kind: string) {
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const points = await f.restorePoints(job.id, kind);
    expect(points.length).toBeGreaterThan(0);
    return points[0];
  }

  it("passes on a good backup: restored, started, seen Running, destroyed; verification OK; nothing left behind", async () => {
    const vm = f.vm("web-ext4");
    const job = await f.createJob({
      name: "full to check",
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
    });
    const point = await onePoint(job, "XVA");
    expect((await verification(point.id)).status).toBe("UNVERIFIED");
    const before = await inventory();
    const checkStarted = Date.now();
    const run = await check(point.id);
    expectSuccess(run);
    const kinds = run.tasks.map((t: Rec) => t.kind);
    expect(kinds).toEqual(expect.arrayContaining(["healthCheck", "restore", "import", "start", "wait", "destroy"]));
    expect(run.tasks.filter((t: Rec) => ["start", "wait", "destroy"].includes(t.kind)).every((t: Rec) => t.status === "SUCCESS")).toBe(
      true,
    );
    const verdict = await verification(point.id);
    expect(verdict).toMatchObject({ status: "OK", error: null });
    // This check's verdict, not an older one (1 s: the database's rounding, never the machine's speed).
    expect(Date.parse(verdict.checkedAt!)).toBeGreaterThanOrEqual(checkStarted - 1000);
    expect(await inventory()).toEqual(before);
  });

  it("fails with the reason when the VM does not boot (lab boot_fails), and still removes the temporary VM", async () => {
    const vm = f.vm("win-fat");
    const job = await f.createJob({
      name: "delta to check",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
    });
    const point = await onePoint(job, "VHD_CHAIN");
    const before = await inventory();
    await f.setFault("boot_fails", {});
    try {
      const run = await check(point.id);
      expect(run.status).toBe("FAILURE");
      expect(run.error).toMatch(/health check of win-fat failed: VM\.start failed: BOOTLOADER_FAILED/);
      expect(run.tasks.find((t: Rec) => t.kind === "start").status).toBe("FAILURE");
      expect(run.tasks.find((t: Rec) => t.kind === "destroy").status).toBe("SUCCESS");
    } finally {
      await f.clearFaults();
    }
    const verdict = await verification(point.id);
    expect(verdict.status).toBe("FAILED");
    expect(verdict.error).toMatch(/BOOTLOADER_FAILED/);
    expect(verdict.checkedAt).not.toBeNull();
    expect(await inventory()).toEqual(before);

    // Once the host boots again, the same point passes.
    expectSuccess(await check(point.id));
    expect((await verification(point.id)).status).toBe("OK");
  });

  it("checks each new restore point inside the backup run when the job has a healthCheckSrUuid", async () => {
    const vm = f.vm("db-data");
    const job = await f.createJob({
      name: "delta with health check",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      settings: { healthCheckSrUuid: srOf("Second storage") },
      schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
    });
    const before = await inventory();
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(run);
    const vmTask = run.tasks.find((t: Rec) => t.kind === "vm");
    const healthTask = run.tasks.find((t: Rec) => t.kind === "healthCheck");
    expect(healthTask).toMatchObject({ status: "SUCCESS", parentId: vmTask.id });
    expect(healthTask.result).toMatchObject({ verdict: "OK", srUuid: srOf("Second storage") });
    const [point] = await f.restorePoints(job.id, "VHD_CHAIN");
    expect((await verification(point.id)).status).toBe("OK");
    expect(await inventory()).toEqual(before);
  });

  it("checks a replica with a copy on its pool, and skips a VM tagged cairn:no-health-check with the reason", async () => {
    const vm = f.vm("win-fat");
    const dr = await f.createJob({
      name: "dr to check",
      mode: "DISASTER_RECOVERY",
      selection: { vmUuids: [vm.uuid] },
      srUuids: [srOf("Second storage")],
      schedules: [{ cron: "0 3 * * *", copyRetention: 1 }],
    });
    const replica = await onePoint(dr, "REPLICA");
    const before = await inventory();
    const run = await check(replica.id);
    expectSuccess(run);
    expect(run.tasks.map((t: Rec) => t.kind)).toEqual(expect.arrayContaining(["healthCheck", "copy", "start", "wait", "destroy"]));
    expect((await verification(replica.id)).status).toBe("OK");
    expect(await inventory()).toEqual(before);

    await f.xapi.call("VM.add_tags", vm.ref, "cairn:no-health-check");
    try {
      await cairnSeesTag(vm.uuid, "cairn:no-health-check");
      const skipped = await check(replica.id);
      expect(skipped.status).toBe("SKIPPED");
      expect(skipped.error).toMatch(/tagged cairn:no-health-check/);
      expect(skipped.tasks.find((t: Rec) => t.kind === "healthCheck").status).toBe("SKIPPED");
      expect((await verification(replica.id)).status).toBe("OK"); // the earlier verdict stands
    } finally {
      await f.xapi.call("VM.remove_tags", vm.ref, "cairn:no-health-check");
    }
  });

  /** Resolves once Cairn's live view of the pool (fed by XAPI's events) shows the tag on the VM; bounded. */
  async function cairnSeesTag(vmUuid: string, tag: string) {
    await eventually(`Cairn to see the tag ${tag} on ${vmUuid}`, async () => {
      const data = await f.gql<{ vms: { uuid: string }[] }>("query($t: [String!]) { vms(tags: $t) { uuid } }", { t: [tag] });
      expect(data.vms.map((v) => v.uuid)).toContain(vmUuid);
    });
  }
});
