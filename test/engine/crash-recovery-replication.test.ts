/**
 * kill -9 of the server while a DR run, a CR run or a restore is importing into the lab (held there by the lab's
 * `import_bytes_per_second` fault). The lab runs in its own process and outlives the kill, as a real pool does: its import
 * goes on reading what the dead process had sent, and what it recorded (the VM and its mark) is not lost with Cairn; with
 * the lab inside Cairn, the kill also cut the lab's state file between the VM and its mark. After the restart: the run is INTERRUPTED; the VM it was importing (marked
 * `cairn:import:run` as soon as XAPI created it) is removed with its disks, and so is the run's source snapshot, so the pool
 * holds exactly what it held before the run; a CR replica the interrupted delta had written onto is marked as matching no
 * base. The next run succeeds: DR with one replica; CR as a delta when the replica was not written, a full with a warning
 * otherwise, never leaving the old replica set aside. The source of a restore is untouched.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Xapi } from "xen-api";
import { startKillableCairn, type KillableCairn } from "../support/killable-server.js";
import { eventually } from "../support/eventually.js";

type Rec = Record<string, any>;

/** Resolves with the first object of the client's cache for which `predicate` holds, waiting for its events (bounded). */
function waitForObject(xapi: Xapi, predicate: (o: Rec) => boolean, timeoutMs = 60_000): Promise<Rec> {
  const find = () => (Object.values(xapi.objects.all) as Rec[]).find(predicate);
  const found = find();
  if (found) return Promise.resolve(found);
  const objects = xapi.objects as unknown as { on(e: string, l: () => void): void; removeListener(e: string, l: () => void): void };
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      objects.removeListener("add", check);
      objects.removeListener("update", check);
    };
    const check = () => {
      const object = find();
      if (object) {
        done();
        resolve(object);
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no such object in the lab within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    objects.on("add", check);
    objects.on("update", check);
  });
}

describe("kill -9 during an import (DR, CR, restore)", () => {
  let c: KillableCairn;
  let vmUuid: (name: string) => string;
  let secondSr: string;

  beforeAll(async () => {
    c = await startKillableCairn({ labOutside: true });
    await c.start();
    const { vms } = await c.gql<{ vms: { name: string; uuid: string }[] }>("{ vms { name uuid } }");
    vmUuid = (name) => vms.find((vm) => vm.name === name)!.uuid;
    const { pools } = await c.gql<{ pools: { srs: { uuid: string; name: string }[] }[] }>("{ pools { srs { uuid name } } }");
    secondSr = pools[0].srs.find((sr) => sr.name === "Second storage")!.uuid;
  }, 180_000);
  afterAll(() => c?.stop());

  async function inventory(): Promise<{ vms: string[]; vdis: string[] }> {
    await c.xapi.barrier();
    const all = Object.values(c.xapi.objects.all) as Rec[];
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
   * The pool holds exactly `before` once the cleanup is done: it runs when the restarted Cairn interrupts the run, or
   * when the pool connects if it was not connected yet then (a busy machine), so it is awaited, not assumed.
   */
  async function expectInventory(before: { vms: string[]; vdis: string[] }): Promise<void> {
    await eventually(
      "the pool to hold what it held before the run",
      async () => {
        const now = await inventory();
        expect(now).toEqual(before);
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
  }

  function diskOf(vm: Rec): string {
    return (vm.VBDs as string[]).map((ref) => c.xapi.getObjectByRef(ref) as unknown as Rec).find((vbd) => vbd.type === "Disk")!
      .VDI as string;
  }

  const byUuid = (uuid: string) => (Object.values(c.xapi.objects.all) as Rec[]).find((o) => o.uuid === uuid)!;

  async function replicaVms(jobId: string): Promise<Rec[]> {
    await c.xapi.barrier();
    return (Object.values(c.xapi.objects.all) as Rec[]).filter(
      (o) => o.$type === "VM" && !o.is_a_snapshot && o.other_config["cairn:replica:job"] === jobId,
    );
  }

  async function createJob(input: Record<string, unknown>): Promise<{ id: string; scheduleId: string }> {
    const { createJob } = await c.gql<{ createJob: { id: string; schedules: { id: string }[] } }>(
      "mutation($input: JobInput!) { createJob(input: $input) { id schedules { id } } }",
      { input },
    );
    return { id: createJob.id, scheduleId: createJob.schedules[0].id };
  }

  async function startRun(job: { id: string; scheduleId: string }): Promise<string> {
    return (
      await c.gql<{ runJob: { id: string } }>("mutation($id: ID!, $s: ID) { runJob(id: $id, scheduleId: $s) { id } }", {
        id: job.id,
        s: job.scheduleId,
      })
    ).runJob.id;
  }

  async function killAndRestart(runId: string): Promise<any> {
    await c.kill();
    expect((await c.db.run.findUniqueOrThrow({ where: { id: runId } })).status).toBe("RUNNING");
    await c.start();
    // The pool outlived Cairn, and so did its fault: the next runs go at full speed (an import already under way keeps
    // the pace it started with, as a slow SR would).
    await c.xapi.call("lab.clear_faults");
    const run = await c.waitForRun(runId, (r) => r.status !== "RUNNING", 30_000);
    expect(run.status).toBe("INTERRUPTED");
    // The cleanup runs in the interrupting process right after: wait until the pool reflects it.
    await c.xapi.barrier();
    return run;
  }

  /**
   * Waits for the VM the run is importing to show in the lab (any VM that was not there before), then for Cairn to mark it
   * with the run (`cairn:import:run`): the kill must come after the mark, and the final checks tell whether the mark did its
   * job.
   */
  async function waitForImportedVm(runId: string, before: { vms: string[] }): Promise<void> {
    const vm = await waitForObject(c.xapi, (o) => o.$type === "VM" && !o.is_a_snapshot && !before.vms.includes(String(o.uuid)));
    // Waits for the mark itself (bounded only by the helper's minute): on a busy machine it can take seconds to come, and a
    // kill before it tests a window no mark can close rather than the cleanup this test is about.
    await waitForObject(c.xapi, (o) => o.uuid === vm.uuid && o.other_config?.["cairn:import:run"] === runId);
  }

  const expectSuccess = (run: any) => expect(run.status, `${run.error}\n${JSON.stringify(run.tasks, null, 1)}`).toBe("SUCCESS");

  it("DR: the half-imported replica and the run's snapshot are removed; the next run makes one replica", { timeout: 300_000 }, async () => {
    const job = await createJob({
      name: "dr crash",
      mode: "DISASTER_RECOVERY",
      selection: { vmUuids: [vmUuid("db-data")] },
      srUuids: [secondSr],
      schedules: [{ cron: "0 3 * * *", copyRetention: 2 }],
    });
    const before = await inventory();
    await c.xapi.call("lab.set_fault", "import_bytes_per_second", { rate: 256 * 1024 });
    const runId = await startRun(job);
    await waitForImportedVm(runId, before);
    await killAndRestart(runId);
    await expectInventory(before);

    expectSuccess(await c.runToEnd(job.id, job.scheduleId));
    expect(await replicaVms(job.id)).toHaveLength(1);
    expect(await c.db.restorePoint.count({ where: { jobId: job.id } })).toBe(1);
  });

  it("CR: killed before the delta wrote anything, the replica is left as it is and the next run is a delta", {
    timeout: 300_000,
  }, async () => {
    const source = byUuid(vmUuid("win-fat"));
    const job = await createJob({
      name: "cr crash early",
      mode: "CONTINUOUS_REPLICATION",
      selection: { vmUuids: [source.uuid] },
      srUuids: [secondSr],
      schedules: [{ cron: "0 3 * * *", copyRetention: 3 }],
    });
    expectSuccess(await c.runToEnd(job.id, job.scheduleId));
    const before = await inventory();
    await c.xapi.call("lab.scribble", diskOf(source), 4, "cr-crash-early");
    // So slow that not even the first 2 MiB block of the delta reaches the replica's disk before the kill.
    await c.xapi.call("lab.set_fault", "import_bytes_per_second", { rate: 16 * 1024 });
    const runId = await startRun(job);
    await c.waitForRun(runId, (run) =>
      run.tasks.some(
        (t: { kind: string; name: string; status: string; progress: number }) =>
          t.kind === "export" && t.name.includes("(delta)") && t.status === "RUNNING" && t.progress > 0,
      ),
    );
    await killAndRestart(runId);
    await expectInventory(before);
    const [replica] = await replicaVms(job.id);
    expect(replica.other_config["cairn:replica:updating"]).toBeUndefined();
    expect(replica.other_config["cairn:replica:base"]).not.toBe("");

    const expected = String(await c.xapi.call("lab.vdi_sha256", diskOf(byUuid(source.uuid))));
    const next = await c.runToEnd(job.id, job.scheduleId);
    expectSuccess(next);
    const exports = next.tasks.filter((t: { kind: string }) => t.kind === "export");
    expect(
      exports.map((t: { name: string }) => t.name).join(),
      JSON.stringify(next.tasks.flatMap((t: { warnings: string[] }) => t.warnings)),
    ).toMatch(/\(delta\)/);
    const replicas = await replicaVms(job.id);
    expect(replicas.map((r) => r.uuid)).toEqual([replica.uuid]);
    expect(String(await c.xapi.call("lab.vdi_sha256", diskOf(replicas[0])))).toBe(expected);
  });

  it("CR: killed after the delta wrote onto the replica, the replica is marked as matching no base; the next run replaces it (a full, with a warning) and no old replica is left", {
    timeout: 300_000,
  }, async () => {
    const source = byUuid(vmUuid("db-data"));
    const job = await createJob({
      name: "cr crash",
      mode: "CONTINUOUS_REPLICATION",
      selection: { vmUuids: [source.uuid] },
      srUuids: [secondSr],
      schedules: [{ cron: "0 3 * * *", copyRetention: 3 }],
    });
    expectSuccess(await c.runToEnd(job.id, job.scheduleId));
    const before = await inventory();
    const [replica] = await replicaVms(job.id);
    const replicaHash = String(await c.xapi.call("lab.vdi_sha256", diskOf(replica)));
    await c.xapi.call("lab.scribble", diskOf(source), 8, "cr-crash");
    await c.xapi.call("lab.set_fault", "import_bytes_per_second", { rate: 1024 * 1024 });
    const runId = await startRun(job);
    await c.waitForRun(runId, (run) =>
      run.tasks.some(
        (t: { kind: string; name: string; status: string; progress: number }) =>
          t.kind === "export" && t.name.includes("(delta)") && t.status === "RUNNING" && t.progress > 0.1,
      ),
    );
    // The lab has no event for a block written onto the replica: its hash is polled.
    await eventually(
      "the delta to write onto the replica",
      async () => expect(String(await c.xapi.call("lab.vdi_sha256", diskOf(replica)))).not.toBe(replicaHash),
      { intervalMs: 200 },
    );
    await killAndRestart(runId);
    await expectInventory(before);
    const [marked] = await replicaVms(job.id);
    expect(marked.other_config["cairn:replica:base"]).toBe("");

    const expected = String(await c.xapi.call("lab.vdi_sha256", diskOf(byUuid(source.uuid))));
    const next = await c.runToEnd(job.id, job.scheduleId);
    expectSuccess(next);
    expect(next.tasks.flatMap((t: { warnings: string[] }) => t.warnings).join("\n")).toMatch(/full replica instead of a delta/);
    const replicas = await replicaVms(job.id);
    expect(replicas, "the partly written replica replaced, not set aside").toHaveLength(1);
    expect(replicas[0].uuid).not.toBe(replica.uuid);
    expect(String(await c.xapi.call("lab.vdi_sha256", diskOf(replicas[0])))).toBe(expected);
  });

  it("restore: the half-created VM is removed with its disks; the source is untouched", { timeout: 300_000 }, async () => {
    const source = byUuid(vmUuid("win-fat"));
    const { remotes } = await c.gql<{ remotes: { id: string; name: string }[] }>("{ remotes { id name } }");
    const job = await createJob({
      name: "full for restore crash",
      mode: "FULL",
      selection: { vmUuids: [source.uuid] },
      remoteIds: [remotes.find((r) => r.name === "local")!.id],
      schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
    });
    expectSuccess(await c.runToEnd(job.id, job.scheduleId));
    const point = await c.db.restorePoint.findFirstOrThrow({ where: { jobId: job.id } });
    const sourceHash = String(await c.xapi.call("lab.vdi_sha256", diskOf(source)));
    const before = await inventory();
    await c.xapi.call("lab.set_fault", "import_bytes_per_second", { rate: 256 * 1024 });
    const { restoreVm } = await c.gql<{ restoreVm: { id: string } }>(
      "mutation($input: RestoreInput!) { restoreVm(input: $input) { id } }",
      { input: { restorePointId: point.id, srUuid: secondSr, name: "crashed restore" } },
    );
    await waitForImportedVm(restoreVm.id, before);
    await killAndRestart(restoreVm.id);
    await expectInventory(before);
    const after = byUuid(source.uuid);
    expect(after.power_state).toBe(source.power_state);
    expect(String(await c.xapi.call("lab.vdi_sha256", diskOf(after)))).toBe(sourceHash);
  });
});
