/**
 * Which VMs a run backs up (smart selection by tags and power states, evaluated at run start; `cairn:no-bak` always left
 * out with a warning; nothing matched: SKIPPED; a VM removed before its turn: a clear VM failure), quiesced snapshots with
 * their fallback, and a failing snapshot retried.
 *
 * The lab's pool: web-ext4 Running [prod, web], win-fat Halted [test, windows], db-data Paused [prod, db], scratch
 * Suspended [cairn:no-bak] (checked first, through the API).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";

describe("VM selection, quiesce and snapshot retries", () => {
  let f: BackupFixture;
  let uuidOf: Map<string, string>;
  let jobs = 0;
  beforeAll(async () => {
    f = await startBackupFixture();
    const data = await f.gql<{ vms: { name: string; uuid: string; tags: string[]; powerState: string }[] }>(
      "{ vms { name uuid tags powerState } }",
    );
    uuidOf = new Map(data.vms.map((vm) => [vm.name, vm.uuid]));
    expect(
      data.vms
        .map(({ name, tags, powerState }) => ({ name, tags: [...tags].sort(), powerState }))
        .sort((a, b) => a.name.localeCompare(b.name)),
    ).toEqual([
      { name: "db-data", tags: ["db", "prod"], powerState: "Paused" },
      { name: "scratch", tags: ["cairn:no-bak"], powerState: "Suspended" },
      { name: "web-ext4", tags: ["prod", "web"], powerState: "Running" },
      { name: "win-fat", tags: ["test", "windows"], powerState: "Halted" },
    ]);
  });
  afterAll(() => f?.stop());

  /** Runs a ROLLING_SNAPSHOT job (quick: no transfer) with this selection. */
  async function runSelection(selection: Record<string, unknown>) {
    const job = await f.createJob({
      name: `selection ${++jobs}`,
      mode: "ROLLING_SNAPSHOT",
      selection,
      schedules: [{ cron: "0 3 * * *", snapshotRetention: 1 }],
    });
    return f.runToEnd(job.id, job.schedules[0].id);
  }
  const names = (run: { vmUuids: string[] }) => run.vmUuids.map((uuid) => [...uuidOf].find(([, u]) => u === uuid)?.[0] ?? uuid).sort();
  const noBakWarnings = (run: { tasks: { kind: string; warnings: string[] }[] }) =>
    run.tasks
      .filter((t) => t.kind === "run")
      .flatMap((t) => t.warnings)
      .filter((w) => /scratch.*cairn:no-bak/.test(w));

  describe("smart selection", () => {
    it.each([
      ["tagsAll [prod]", { tagsAll: ["prod"] }, ["db-data", "web-ext4"]],
      ["tagsAll [prod, web]", { tagsAll: ["prod", "web"] }, ["web-ext4"]],
      ["tagsAny [web, windows]", { tagsAny: ["web", "windows"] }, ["web-ext4", "win-fat"]],
      ["tagsAll [prod] and tagsNone [db]", { tagsAll: ["prod"], tagsNone: ["db"] }, ["web-ext4"]],
      ["powerStates [Running, Paused]", { powerStates: ["Running", "Paused"] }, ["db-data", "web-ext4"]],
      ["tagsAny [prod, test] and powerStates [Halted]", { tagsAny: ["prod", "test"], powerStates: ["Halted"] }, ["win-fat"]],
    ])("%s picks exactly the matching VMs and backs each up", async (_label, smart, expected) => {
      const run = await runSelection({ smart });
      expectSuccess(run);
      expect(names(run)).toEqual(expected);
      expect(run.vmsTotal).toBe(expected.length);
      expect(run.vmsSucceeded).toBe(expected.length);
      expect(
        run.tasks
          .filter((t: { kind: string }) => t.kind === "vm")
          .map((t: { name: string }) => t.name)
          .sort(),
      ).toEqual(expected);
      expect(noBakWarnings(run)).toEqual([]);
    });

    it("leaves a cairn:no-bak VM out with a warning whenever the pattern would take it", async () => {
      const everything = await runSelection({ smart: {} });
      expectSuccess(everything);
      expect(names(everything)).toEqual(["db-data", "web-ext4", "win-fat"]);
      expect(noBakWarnings(everything)).toHaveLength(1);

      const suspended = await runSelection({ smart: { powerStates: ["Suspended", "Halted"] } });
      expectSuccess(suspended);
      expect(names(suspended)).toEqual(["win-fat"]);
      expect(noBakWarnings(suspended)).toHaveLength(1);
    });

    it("leaves a cairn:no-bak VM out even when selected by uuid", async () => {
      const run = await runSelection({ vmUuids: [uuidOf.get("scratch"), uuidOf.get("win-fat")] });
      expectSuccess(run);
      expect(names(run)).toEqual(["win-fat"]);
      expect(noBakWarnings(run)).toHaveLength(1);
    });

    it("is SKIPPED with its reason when nothing matches, and when only cairn:no-bak VMs match", async () => {
      const none = await runSelection({ smart: { tagsAll: ["no-such-tag"] } });
      expect(none.status).toBe("SKIPPED");
      expect(none.error).toMatch(/No VM matched/);
      expect(none.vmsTotal).toBe(0);
      expect(none.tasks.filter((t: { kind: string }) => t.kind === "vm")).toEqual([]);

      const onlyExcluded = await runSelection({ smart: { powerStates: ["Suspended"] } });
      expect(onlyExcluded.status).toBe("SKIPPED");
      expect(noBakWarnings(onlyExcluded)).toHaveLength(1);
    });
  });

  it("fails, clearly, a VM removed between the run's start and its turn; the other VM is backed up", { timeout: 120_000 }, async () => {
    const source = f.vm("win-fat");
    const cloneRef = (await f.xapi.call("VM.clone", source.ref, "doomed")) as string;
    // Seen by this client, not yet perhaps by Cairn's: createJob catches up with the pool before it refuses a VM it lacks.
    await f.xapi.barrier();
    const doomed = f.xapi.getObjectByRef(cloneRef);
    const first = f.vm("db-data");
    const job = await f.createJob({
      name: "vanishing VM",
      mode: "FULL",
      selection: { vmUuids: [first.uuid, doomed.uuid] },
      remoteIds: [f.remoteId],
      settings: { concurrency: 1 },
      schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
    });
    await f.setFault("export_bytes_per_second", { rate: 1024 * 1024 });
    let run;
    try {
      const runId = await f.startRun(job.id, job.schedules[0].id);
      // db-data goes first (name order, one at a time): remove the other VM while db-data transfers.
      await f.waitForRun(runId, (r) =>
        r.tasks.some((t: { kind: string; status: string }) => t.kind === "transfer" && t.status === "RUNNING"),
      );
      await f.xapi.call("VM.destroy", cloneRef);
      await f.xapi.barrier();
      await f.clearFaults();
      run = await f.waitForEnd(runId, 60_000);
    } finally {
      await f.clearFaults();
    }
    expect(run.status).toBe("FAILURE");
    expect(run.vmsSucceeded).toBe(1);
    expect(run.vmsFailed).toBe(1);
    expect(run.error).toMatch(/1 of 2 VMs failed: doomed/);
    const doomedTask = run.tasks.find((t: { kind: string; vmUuid: string }) => t.kind === "vm" && t.vmUuid === doomed.uuid);
    expect(doomedTask.status).toBe("FAILURE");
    expect(doomedTask.message).toMatch(/doomed.*no longer in (its )?pool/);
    expect((await f.restorePoints(job.id)).map((p: { vmUuid: string }) => p.vmUuid)).toEqual([first.uuid]);
  });

  describe("quiesce", () => {
    afterAll(() => f.clearFaults());

    it.each([
      ["not_supported", /VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED/],
      ["removed", /MESSAGE_REMOVED/],
    ])(
      "falls back to a normal snapshot with a warning naming the reason when quiesce is %s; the restore point is not quiesced",
      async (mode, reason) => {
        await f.setFault("quiesce", { mode });
        const vm = f.vm("web-ext4");
        const job = await f.createJob({
          name: `quiesce ${mode}`,
          mode: "FULL",
          selection: { vmUuids: [vm.uuid] },
          remoteIds: [f.remoteId],
          settings: { quiesce: true },
          schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
        });
        const run = await f.runToEnd(job.id, job.schedules[0].id);
        expectSuccess(run);
        const snapshotTask = run.tasks.find((t: { kind: string }) => t.kind === "snapshot");
        expect(snapshotTask.warnings).toHaveLength(1);
        expect(snapshotTask.warnings[0]).toMatch(reason);
        expect(snapshotTask.warnings[0]).toMatch(/normal \(crash-consistent\) snapshot/);
        const vmTask = run.tasks.find((t: { kind: string }) => t.kind === "vm");
        expect(vmTask.warnings.join("\n")).toMatch(reason);
        const points = await f.restorePoints(job.id);
        expect(points).toHaveLength(1);
        expect(points[0].quiesced).toBe(false);
      },
    );

    it("takes a quiesced snapshot when the guest can, with no warning; the restore point is quiesced", async () => {
      await f.setFault("quiesce", { mode: "works" });
      const vm = f.vm("web-ext4");
      const job = await f.createJob({
        name: "quiesce works",
        mode: "FULL",
        selection: { vmUuids: [vm.uuid] },
        remoteIds: [f.remoteId],
        settings: { quiesce: true },
        schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
      });
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expectSuccess(run);
      expect(run.tasks.flatMap((t: { warnings: string[] }) => t.warnings)).toEqual([]);
      const points = await f.restorePoints(job.id);
      expect(points).toHaveLength(1);
      expect(points[0].quiesced).toBe(true);
    });

    it("records quiesced false, with no warning, when quiesce is not asked", async () => {
      await f.setFault("quiesce", { mode: "works" });
      const vm = f.vm("web-ext4");
      const job = await f.createJob({
        name: "no quiesce",
        mode: "FULL",
        selection: { vmUuids: [vm.uuid] },
        remoteIds: [f.remoteId],
        schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
      });
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expectSuccess(run);
      expect((await f.restorePoints(job.id))[0].quiesced).toBe(false);
    });
  });

  describe("a failing snapshot", () => {
    afterAll(() => f.clearFaults());

    it("fails the VM with XAPI's error when retries is 0", async () => {
      const vm = f.vm("win-fat");
      const job = await f.createJob({
        name: "snapshot fails",
        mode: "FULL",
        selection: { vmUuids: [vm.uuid] },
        remoteIds: [f.remoteId],
        schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
      });
      await f.setFault("snapshot_fails", { count: 1 });
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expect(run.status).toBe("FAILURE");
      expect(run.vmsFailed).toBe(1);
      const vmTask = run.tasks.find((t: { kind: string }) => t.kind === "vm");
      expect(vmTask.status).toBe("FAILURE");
      expect(vmTask.message).toMatch(/SR_BACKEND_FAILURE_44/);
      expect(run.tasks.find((t: { kind: string }) => t.kind === "snapshot").status).toBe("FAILURE");
      expect(await f.restorePoints(job.id)).toEqual([]);
    });

    it("retries the VM (retries 1) with a warning, and succeeds when the second snapshot works", async () => {
      const vm = f.vm("win-fat");
      const job = await f.createJob({
        name: "snapshot fails once",
        mode: "FULL",
        selection: { vmUuids: [vm.uuid] },
        remoteIds: [f.remoteId],
        settings: { retries: 1 },
        schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
      });
      await f.setFault("snapshot_fails", { count: 1 });
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expectSuccess(run);
      const vmTask = run.tasks.find((t: { kind: string }) => t.kind === "vm");
      expect(vmTask.warnings.join("\n")).toMatch(/attempt 1 failed \(.*SR_BACKEND_FAILURE_44.*\); retrying/);
      expect(run.tasks.filter((t: { kind: string }) => t.kind === "snapshot").map((t: { status: string }) => t.status)).toEqual([
        "FAILURE",
        "SUCCESS",
      ]);
      expect(await f.restorePoints(job.id)).toHaveLength(1);
    });

    it("fails the VM with XAPI's error after its retry when the snapshot keeps failing", async () => {
      const vm = f.vm("win-fat");
      const job = await f.createJob({
        name: "snapshot fails twice",
        mode: "FULL",
        selection: { vmUuids: [vm.uuid] },
        remoteIds: [f.remoteId],
        settings: { retries: 1 },
        schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
      });
      await f.setFault("snapshot_fails", { count: 2 });
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expect(run.status).toBe("FAILURE");
      const vmTask = run.tasks.find((t: { kind: string }) => t.kind === "vm");
      expect(vmTask.status).toBe("FAILURE");
      expect(vmTask.message).toMatch(/SR_BACKEND_FAILURE_44/);
      expect(vmTask.warnings.join("\n")).toMatch(/attempt 1 failed/);
      expect(run.tasks.filter((t: { kind: string }) => t.kind === "snapshot").map((t: { status: string }) => t.status)).toEqual([
        "FAILURE",
        "FAILURE",
      ]);
      expect(await f.restorePoints(job.id)).toEqual([]);
      expect(await f.jobSnapshots(job.id)).toEqual([]);
    });
  });
});
