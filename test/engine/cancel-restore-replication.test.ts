/**
 * cancelRun during a restore, a DR run and a CR run, each held in its import by the lab's `import_bytes_per_second` fault:
 * the run ends CANCELLED within seconds, nothing half-imported stays on the target pool (no new VM, no new VDI; a CR replica
 * partly written by the cancelled delta is marked as matching no base), the source is untouched, and the next run works.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";

type Rec = Record<string, any>;

const IMPORT_RATE = 256 * 1024;

describe("cancelRun during an import", () => {
  let f: BackupFixture;
  let secondSr: string;
  beforeAll(async () => {
    f = await startBackupFixture();
    const { pools } = await f.gql<{ pools: { srs: { uuid: string; name: string }[] }[] }>("{ pools { srs { uuid name } } }");
    secondSr = pools[0].srs.find((sr) => sr.name === "Second storage")!.uuid;
  });
  afterAll(() => f?.stop());

  /** uuids of the pool's VMs (snapshots and templates included) and VDIs, after the client caught up with the lab. */
  async function inventory(): Promise<{ vms: string[]; vdis: string[] }> {
    await f.xapi.barrier();
    const all = Object.values(f.xapi.objects.all) as Rec[];
    return {
      vms: all
        .filter((o) => o.$type === "VM")
        .map((o) => String(o.uuid))
        .sort(),
      vdis: all
        .filter((o) => o.$type === "VDI")
        .map((o) => String(o.uuid))
        .sort(),
    };
  }

  /**
   * Cancels the run once `running` holds, and returns the ended run, checking it ended CANCELLED with no task left running
   * (how fast is a benchmark's business; the 30 s wait only bounds a hang).
   */
  async function cancelWhen(runId: string, running: (run: any) => boolean): Promise<any> {
    await f.waitForRun(runId, running);
    await f.gql("mutation($id: ID!) { cancelRun(id: $id) { id } }", { id: runId });
    const ended = await f.waitForEnd(runId, 30_000);
    expect(ended.status, JSON.stringify(ended.tasks, null, 1)).toBe("CANCELLED");
    expect(ended.tasks.filter((t: { status: string }) => t.status === "RUNNING")).toEqual([]);
    return ended;
  }

  const importing = (kind: string) => (run: any) =>
    run.tasks.some((t: { kind: string; status: string; progress: number }) => t.kind === kind && t.status === "RUNNING" && t.progress > 0);

  it("stops a restore mid-import within seconds and leaves no VM or VDI on the target pool; the source is untouched; a restore afterwards works", async () => {
    const vm = f.vm("win-fat");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "full to restore",
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const [point] = await f.restorePoints(job.id);
    const sourceHash = String(await f.xapi.call("lab.vdi_sha256", disk));
    const before = await inventory();

    await f.setFault("import_bytes_per_second", { rate: IMPORT_RATE });
    try {
      const { restoreVm } = await f.gql<{ restoreVm: { id: string } }>(
        "mutation($input: RestoreInput!) { restoreVm(input: $input) { id } }",
        { input: { restorePointId: point.id, srUuid: secondSr, name: "cancelled restore" } },
      );
      const ended = await cancelWhen(restoreVm.id, importing("import"));
      expect(ended.tasks.find((t: { kind: string }) => t.kind === "restore").status).toBe("CANCELLED");
      expect(await inventory()).toEqual(before);
    } finally {
      await f.clearFaults();
    }
    expect(String(await f.xapi.call("lab.vdi_sha256", disk))).toBe(sourceHash);

    const { restoreVm } = await f.gql<{ restoreVm: { id: string } }>(
      "mutation($input: RestoreInput!) { restoreVm(input: $input) { id } }",
      { input: { restorePointId: point.id, srUuid: secondSr, name: "restore after cancel" } },
    );
    expectSuccess(await f.waitForEnd(restoreVm.id));
  });

  // Once flaky under load (the follow-up run's import ended IMPORT_ERROR_PREMATURE_EOF, its XVA short of the 1024-byte tar
  // trailer): the lab lost the bytes still buffered when the upload's FIN came. Fixed in the lab; see test/lab/lab-import-body.test.ts.
  it("stops a DR run mid-import within seconds with no half-imported replica, no snapshot left; the next run makes the replica", async () => {
    const vm = f.vm("db-data");
    const job = await f.createJob({
      name: "dr cancel",
      mode: "DISASTER_RECOVERY",
      selection: { vmUuids: [vm.uuid] },
      srUuids: [secondSr],
      schedules: [{ cron: "0 3 * * *", copyRetention: 2 }],
    });
    const before = await inventory();
    await f.setFault("import_bytes_per_second", { rate: IMPORT_RATE });
    try {
      const runId = await f.startRun(job.id, job.schedules[0].id);
      await cancelWhen(runId, importing("export"));
      expect(await inventory()).toEqual(before);
      expect(await f.restorePoints(job.id)).toEqual([]);
    } finally {
      await f.clearFaults();
    }
    const next = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(next);
    await f.xapi.barrier();
    const replicas = (Object.values(f.xapi.objects.all) as Rec[]).filter(
      (o) => o.$type === "VM" && !o.is_a_snapshot && o.other_config["cairn:replica:job"] === job.id,
    );
    expect(replicas).toHaveLength(1);
    expect(await f.restorePoints(job.id, "REPLICA")).toHaveLength(1);
  });

  it("stops a CR run mid-/import_raw_vdi within seconds; the partly written replica is marked as matching no base, and the next run replaces it (a full, with a warning) leaving one replica equal to the VM", async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "cr cancel",
      mode: "CONTINUOUS_REPLICATION",
      selection: { vmUuids: [vm.uuid] },
      srUuids: [secondSr],
      schedules: [{ cron: "0 3 * * *", copyRetention: 3 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const replicaVms = async () => {
      await f.xapi.barrier();
      return (Object.values(f.xapi.objects.all) as Rec[]).filter(
        (o) => o.$type === "VM" && !o.is_a_snapshot && o.other_config["cairn:replica:job"] === job.id,
      );
    };
    const [replica] = await replicaVms();
    const [replicaDisk] = f.diskRefs(replica.$ref);
    const replicaHashBefore = String(await f.xapi.call("lab.vdi_sha256", replicaDisk));

    await f.xapi.call("lab.scribble", disk, 8, "cr-cancel");
    await f.setFault("import_bytes_per_second", { rate: 1024 * 1024 });
    try {
      const runId = await f.startRun(job.id, job.schedules[0].id);
      await f.waitForRun(runId, (run) =>
        run.tasks.some(
          (t: { kind: string; name: string; status: string; progress: number }) =>
            t.kind === "export" && t.name.includes("(delta)") && t.status === "RUNNING" && t.progress > 0,
        ),
      );
      // Bounded wait for the lab to have written a block of the delta onto the replica (the lab has no event for it).
      const replicaHash = async () => String(await f.xapi.call("lab.vdi_sha256", replicaDisk));
      for (let i = 0; i < 50 && (await replicaHash()) === replicaHashBefore; i++) await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await replicaHash(), "the delta wrote onto the replica").not.toBe(replicaHashBefore);
      await cancelWhen(runId, () => true);
      const [after] = await replicaVms();
      expect(after.uuid).toBe(replica.uuid);
      expect(after.other_config["cairn:replica:base"]).toBe("");
      expect(after.other_config["cairn:replica:superseded"]).toBeUndefined();
    } finally {
      await f.clearFaults();
    }

    const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
    const next = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(next);
    expect(next.tasks.flatMap((t: { warnings: string[] }) => t.warnings).join("\n")).toMatch(/full replica instead of a delta/);
    const replicas = await replicaVms();
    expect(replicas, "one replica: the partly written one replaced, not set aside").toHaveLength(1);
    expect(replicas[0].uuid).not.toBe(replica.uuid);
    expect(String(await f.xapi.call("lab.vdi_sha256", f.diskRefs(replicas[0].$ref)[0]))).toBe(expected);
  });
});
