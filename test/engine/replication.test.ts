import { createClient, type Xapi } from "xen-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";

interface PoolInfo {
  id: string;
  name: string;
  srs: { uuid: string; name: string }[];
}

type Rec = Record<string, any>;

describe("disaster recovery and continuous replication against two lab pools", () => {
  let f: BackupFixture;
  let xapi2: Xapi;
  let pools: PoolInfo[];

  beforeAll(async () => {
    f = await startBackupFixture({ labPools: 2 });
    const lab2 = f.server.cairn.labs[1];
    xapi2 = createClient({
      url: lab2.url,
      auth: { user: lab2.user, password: lab2.password },
      allowUnauthorized: true,
      eventPollDelay: 1000,
    }) as Xapi;
    await xapi2.connect();
    await xapi2.objectsFetched;
    const data = await f.gql<{ pools: PoolInfo[] }>("{ pools { id name srs { uuid name } } }");
    const order = f.server.cairn.labs.map((lab) => lab.poolName);
    pools = [...data.pools].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  });
  afterAll(async () => {
    await xapi2?.disconnect();
    await f?.stop();
  });

  const srOf = (pool: number, name: string) => pools[pool].srs.find((sr) => sr.name === name)!.uuid;
  const clientOf = (pool: number) => (pool === 0 ? f.xapi : xapi2);

  /** The job's replica VMs (not snapshots) and replica snapshots on one SR of one pool, oldest first. */
  async function replicasOn(pool: number, srUuid: string, jobId: string) {
    const xapi = clientOf(pool);
    await xapi.barrier();
    const marked = (Object.values(xapi.objects.all) as Rec[])
      .filter((o) => o.$type === "VM" && o.other_config["cairn:replica:job"] === jobId && o.other_config["cairn:replica:sr"] === srUuid)
      .sort((a, b) => String(a.other_config["cairn:replica:datetime"]).localeCompare(String(b.other_config["cairn:replica:datetime"])));
    return { vms: marked.filter((o) => !o.is_a_snapshot), snapshots: marked.filter((o) => o.is_a_snapshot) };
  }

  async function diskHashes(pool: number, vm: Rec): Promise<string[]> {
    const xapi = clientOf(pool);
    const hashes: string[] = [];
    for (const vbdRef of vm.VBDs as string[]) {
      const vbd = xapi.getObjectByRef(vbdRef) as unknown as Rec;
      if (vbd.type !== "Disk") continue;
      hashes.push(String(await xapi.call("lab.vdi_sha256", vbd.VDI)));
    }
    return hashes;
  }

  function srRefOf(pool: number, srUuid: string): string {
    return (clientOf(pool).getObjectByUuid(srUuid) as unknown as Rec).$ref;
  }

  function vdiSrs(pool: number, vm: Rec): string[] {
    const xapi = clientOf(pool);
    return (vm.VBDs as string[])
      .map((ref) => xapi.getObjectByRef(ref) as unknown as Rec)
      .filter((vbd) => vbd.type === "Disk")
      .map((vbd) => String((xapi.getObjectByRef(vbd.VDI) as unknown as Rec).SR));
  }

  it("DR: each run imports a halted, start-blocked replica equal to the snapshot into an SR of each pool, keeping copyRetention per SR", async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const targets = [
      { pool: 0, sr: srOf(0, "Second storage") },
      { pool: 1, sr: srOf(1, "Local storage") },
    ];
    const job = await f.createJob({
      name: "dr job",
      mode: "DISASTER_RECOVERY",
      selection: { vmUuids: [vm.uuid] },
      srUuids: targets.map((t) => t.sr),
      settings: { compression: "ZSTD" },
      schedules: [{ cron: "0 3 * * *", copyRetention: 2 }],
    });
    for (let i = 0; i < 4; i++) {
      if (i > 0) await f.xapi.call("lab.scribble", disk, 2, `dr-${i}`);
      const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expectSuccess(run);
      for (const target of targets) {
        const { vms } = await replicasOn(target.pool, target.sr, job.id);
        expect(vms).toHaveLength(Math.min(i + 1, 2));
        const newest = vms.at(-1)!;
        expect(await diskHashes(target.pool, newest)).toEqual([expected]);
        expect(vdiSrs(target.pool, newest)).toEqual([srRefOf(target.pool, target.sr)]);
        expect(newest.power_state).toBe("Halted");
        expect(newest.is_a_template).toBe(false);
        expect(newest.tags).toContain("cairn:replica");
        expect(newest.blocked_operations.start).toMatch(/This is a Cairn replica/);
        expect(newest.name_label).toMatch(/^db-data - dr job - \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$/);
        expect(newest.other_config).toMatchObject({
          "cairn:replica:of": vm.uuid,
          "cairn:replica:schedule": job.schedules[0].id,
          "cairn:replica:mode": "DISASTER_RECOVERY",
        });
        expect(newest.other_config["xo:backup:job"]).toBeUndefined();
      }
      // The source snapshot is removed (snapshotRetention 0).
      expect(await f.jobSnapshots(job.id)).toHaveLength(0);
    }
    // A replica refuses to start, with the reason.
    const [oneReplica] = (await replicasOn(0, targets[0].sr, job.id)).vms;
    await expect(f.xapi.call("VM.start", oneReplica.$ref, false, false)).rejects.toMatchObject({ code: "OPERATION_BLOCKED" });

    const points = await f.restorePoints(job.id, "REPLICA");
    expect(points).toHaveLength(4);
    for (const target of targets) expect(points.filter((p) => p.sr === target.sr)).toHaveLength(2);
    expect(points.every((p) => p.vmUuid === vm.uuid && p.remote === null)).toBe(true);
  });

  it("CR: a full replica first, then deltas applied to it, a replica snapshot per run with copyRetention kept; a booted or written replica gets a fresh full with a warning", async () => {
    const vm = f.vm("win-fat");
    const [disk] = f.diskRefs(vm.ref);
    const targets = [
      { pool: 0, sr: srOf(0, "Local storage") },
      { pool: 1, sr: srOf(1, "Second storage") },
    ];
    const job = await f.createJob({
      name: "cr job",
      mode: "CONTINUOUS_REPLICATION",
      selection: { vmUuids: [vm.uuid] },
      srUuids: targets.map((t) => t.sr),
      schedules: [{ cron: "0 3 * * *", copyRetention: 3 }],
    });
    const replicaUuids = new Map<number, string>();
    for (let i = 0; i < 4; i++) {
      if (i > 0) await f.xapi.call("lab.scribble", disk, 2, `cr-${i}`);
      const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expectSuccess(run);
      const warnings = run.tasks.flatMap((t: Rec) => t.warnings);
      expect(warnings.filter((w: string) => /full replica instead/.test(w))).toEqual([]);
      const exports = run.tasks.filter((t: Rec) => t.kind === "export").map((t: Rec) => t.name);
      if (i === 0) expect(exports).toEqual([expect.stringMatching(/as XVA/)]);
      else expect(exports).toEqual([expect.stringMatching(/\(delta\)$/)]);
      for (const target of targets) {
        const { vms, snapshots } = await replicasOn(target.pool, target.sr, job.id);
        expect(vms).toHaveLength(1);
        const replica = vms[0];
        if (i === 0) replicaUuids.set(target.pool, replica.uuid);
        else expect(replica.uuid).toBe(replicaUuids.get(target.pool)); // the same replica, updated in place
        expect(await diskHashes(target.pool, replica)).toEqual([expected]);
        expect(replica.power_state).toBe("Halted");
        expect(replica.blocked_operations.start).toMatch(/This is a Cairn replica/);
        expect(snapshots).toHaveLength(Math.min(i + 1, 3));
        expect(await diskHashes(target.pool, snapshots.at(-1)!)).toEqual([expected]);
      }
      // The source keeps one snapshot: the base of the next delta.
      expect(await f.jobSnapshots(job.id, vm.uuid)).toHaveLength(1);
    }
    let points = await f.restorePoints(job.id, "REPLICA");
    for (const target of targets) expect(points.filter((p) => p.sr === target.sr)).toHaveLength(3);

    // Someone boots the replica on pool 1 (removing the block first), and writes on the disk of the one on pool 2.
    const booted = (await replicasOn(0, targets[0].sr, job.id)).vms[0];
    await f.xapi.call("VM.remove_from_blocked_operations", booted.$ref, "start");
    await f.xapi.call("VM.start", booted.$ref, false, false);
    const written = (await replicasOn(1, targets[1].sr, job.id)).vms[0];
    const writtenDisk = (
      xapi2.getObjectByRef(
        written.VBDs.find((ref: string) => (xapi2.getObjectByRef(ref) as unknown as Rec).type === "Disk"),
      ) as unknown as Rec
    ).VDI;
    await xapi2.call("lab.scribble", writtenDisk, 1, "someone-wrote-here");

    await f.xapi.call("lab.scribble", disk, 2, "cr-5");
    const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(run);
    const vmTask = run.tasks.find((t: Rec) => t.kind === "vm");
    expect(vmTask.warnings).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/full replica instead of a delta: .*is Running: it was started/),
        expect.stringMatching(/full replica instead of a delta: .*was written since its last update/),
        expect.stringMatching(/set aside/),
      ]),
    );
    for (const target of targets) {
      const { vms, snapshots } = await replicasOn(target.pool, target.sr, job.id);
      const live = vms.filter((v) => !v.other_config["cairn:replica:superseded"]);
      expect(live).toHaveLength(1);
      expect(live[0].uuid).not.toBe(replicaUuids.get(target.pool));
      expect(await diskHashes(target.pool, live[0])).toEqual([expected]);
      // The diverged replica is left as it is, marked; retention still counts the snapshots per schedule.
      expect(vms.find((v) => v.uuid === replicaUuids.get(target.pool))?.other_config["cairn:replica:superseded"]).toBeTruthy();
      expect(snapshots).toHaveLength(3);
    }
    expect((clientOf(0).getObjectByUuid(booted.uuid) as unknown as Rec).power_state).toBe("Running");
    points = await f.restorePoints(job.id, "REPLICA");
    for (const target of targets) expect(points.filter((p) => p.sr === target.sr)).toHaveLength(3);

    // The next run is a delta again, onto the new replicas.
    await f.xapi.call("lab.scribble", disk, 1, "cr-6");
    const expected6 = String(await f.xapi.call("lab.vdi_sha256", disk));
    const run6 = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(run6);
    expect(run6.tasks.filter((t: Rec) => t.kind === "export").map((t: Rec) => t.name)).toEqual([expect.stringMatching(/\(delta\)$/)]);
    for (const target of targets) {
      const live = (await replicasOn(target.pool, target.sr, job.id)).vms.filter((v) => !v.other_config["cairn:replica:superseded"]);
      expect(await diskHashes(target.pool, live[0])).toEqual([expected6]);
    }
  });
});
