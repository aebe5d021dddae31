/**
 * The run machinery of one process on real Postgres: launch, claim, task tree and events, conflict, cancel, failure,
 * timeout, coalesced progress, and a clean stop. Executors are small functions written here (the machinery's outside input).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunContext, RunExecutor } from "../../server/engine/run-executor.js";
import { SHUTDOWN_MESSAGE } from "../../server/runs/run-worker.js";
import { CairnError } from "../../server/errors.js";
import type { RunMachinery } from "../../server/runs/run-machinery.js";
import { RunService } from "../../server/services/run-service.js";
import { aborted, createRunFixture, deferred, type RunFixture } from "../scheduler/run-fixture.js";

const ended = (run: { status: string }) => !["PENDING", "RUNNING"].includes(run.status);

describe("the run machinery of one process", () => {
  let fx: RunFixture;
  let machinery: RunMachinery;
  // Each test installs the executor it needs: the machinery calls whichever is current.
  let backup: RunExecutor = async () => ({ status: "SUCCESS" });

  beforeAll(async () => {
    fx = await createRunFixture();
    machinery = await fx.machinery({ executors: { BACKUP: (context) => backup(context) } });
  });
  afterAll(async () => fx?.close());

  it("runs a launched run PENDING -> RUNNING -> SUCCESS, recording its task tree and publishing every change in order", async () => {
    const job = await fx.job();
    const seenInside: string[] = [];
    backup = async ({ run, root, report }) => {
      seenInside.push((await fx.db.run.findUniqueOrThrow({ where: { id: run.id } })).status);
      report({ vmsTotal: 1, vmUuids: ["vm-1"] });
      await root.run(
        "vm",
        "VM one",
        async (vm) => {
          await vm.run("snapshot", "snapshot", async () => ({ snapshotUuid: "snap-1" }));
          await vm.run("export", "export to local", async (exp) => {
            exp.progress(0.5, 512);
            await exp.warn("slow remote");
            await exp.succeed({ size: 1024 }, 1024);
          });
        },
        { vmUuid: "vm-1" },
      );
      report({ vmsSucceeded: 1, transferredBytes: 1024, progress: 1 });
      return { status: "SUCCESS" };
    };
    const recording = fx.record();
    const launched = await machinery.launcher.launchRun({ jobId: job.id, trigger: "MANUAL" });
    expect(["PENDING", "RUNNING"]).toContain(launched.status);
    const run = await fx.waitForRun(launched.id, ended);
    // The run's final event follows its final write: it may arrive just after the read that saw SUCCESS.
    const lastIndex = (type: string) => recording.events.findLastIndex((e) => e.runId === launched.id && e.type === type);
    await expect
      .poll(() => lastIndex("run") > lastIndex("task"), { timeout: 30_000, message: "a run event after the last task event" })
      .toBe(true);
    recording.stop();

    expect(run).toMatchObject({
      status: "SUCCESS",
      error: null,
      progress: 1,
      vmsTotal: 1,
      vmsSucceeded: 1,
      transferredBytes: 1024n,
      vmUuids: ["vm-1"],
      workerId: machinery.workerId,
    });
    expect(run.startedAt).not.toBeNull();
    expect(run.endedAt!.getTime()).toBeGreaterThanOrEqual(run.startedAt!.getTime());
    expect(seenInside).toEqual(["RUNNING"]);

    const tasks = await fx.db.task.findMany({ where: { runId: run.id }, orderBy: { position: "asc" } });
    const byId = new Map(tasks.map((t) => [t.id, t]));
    expect(tasks.map((t) => [t.kind, t.parentId ? byId.get(t.parentId)!.kind : null, t.status])).toEqual([
      ["run", null, "SUCCESS"],
      ["vm", "run", "SUCCESS"],
      ["snapshot", "vm", "SUCCESS"],
      ["export", "vm", "SUCCESS"],
    ]);
    const exportTask = tasks[3];
    expect(exportTask).toMatchObject({ warnings: ["slow remote"], result: { size: 1024 }, sizeBytes: 1024n, progress: 1 });
    expect(tasks[1].vmUuid).toBe("vm-1");
    expect(tasks[2].result).toEqual({ snapshotUuid: "snap-1" });

    // Every task is announced when created and when ended; the run's last event comes after the last task event.
    const ofRun = recording.events.filter((e) => e.runId === run.id);
    for (const task of tasks) expect(ofRun.filter((e) => e.type === "task" && e.taskId === task.id).length).toBeGreaterThanOrEqual(2);
    const lastTask = ofRun.findLastIndex((e) => e.type === "task");
    const lastRun = ofRun.findLastIndex((e) => e.type === "run");
    expect(lastRun).toBeGreaterThan(lastTask);
    expect(ofRun.filter((e) => e.type === "run").length).toBeGreaterThanOrEqual(3); // launched, claimed, ended
  });

  it("refuses a second launch of a running job with CONFLICT naming the run, and allows it once the run ended", async () => {
    const job = await fx.job();
    const started = deferred();
    const release = deferred();
    backup = async () => {
      started.resolve();
      await release.promise;
      return { status: "SUCCESS" };
    };
    const first = await machinery.launcher.launchRun({ jobId: job.id, trigger: "MANUAL" });
    const second = machinery.launcher.launchRun({ jobId: job.id, trigger: "API" });
    await expect(second).rejects.toThrow(CairnError);
    await expect(second).rejects.toMatchObject({
      code: "CONFLICT",
      details: { runId: first.id },
      // By the job's name; the run is in details (a link), not its uuid in the sentence.
      message: expect.stringMatching(/^Job "job .+" is already running \(its current run is (running|waiting to start) since .+ UTC\)/),
    });
    await started.promise;
    await expect(machinery.launcher.launchRun({ jobId: job.id, trigger: "MANUAL" })).rejects.toMatchObject({ code: "CONFLICT" });
    release.resolve();
    await fx.waitForRun(first.id, ended);
    backup = async () => ({ status: "SUCCESS" });
    const third = await machinery.launcher.launchRun({ jobId: job.id, trigger: "MANUAL" });
    expect((await fx.waitForRun(third.id, ended)).status).toBe("SUCCESS");
    expect(await fx.db.run.count({ where: { jobId: job.id } })).toBe(2);
  });

  it("runs a disabled job when asked by hand, and refuses a schedule that is not the job's", async () => {
    backup = async () => ({ status: "SUCCESS" });
    const disabled = await fx.db.job.create({
      data: { name: "disabled by hand", mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {}, enabled: false },
    });
    const run = await machinery.launcher.launchRun({ jobId: disabled.id, trigger: "API" });
    expect(await fx.waitForRun(run.id, ended)).toMatchObject({ status: "SUCCESS", trigger: "API" });
    const other = await fx.job();
    const schedule = await fx.db.schedule.create({ data: { jobId: other.id, cron: "0 3 * * *", enabled: false } });
    await expect(machinery.launcher.launchRun({ jobId: disabled.id, scheduleId: schedule.id, trigger: "MANUAL" })).rejects.toMatchObject({
      code: "NOT_FOUND",
    });
    await expect(machinery.launcher.launchRun({ jobId: "not-a-uuid", trigger: "MANUAL" })).rejects.toMatchObject({ code: "NOT_FOUND" });
  });

  it("aborts the executor's signal when the run is cancelled and ends the run CANCELLED", async () => {
    const job = await fx.job();
    const started = deferred();
    let reason: unknown;
    backup = async ({ root, signal }) => {
      await root.child("vm", "VM one");
      started.resolve();
      reason = await aborted(signal);
      throw new Error(`stopped: ${String(reason)}`);
    };
    const run = await machinery.launcher.launchRun({ jobId: job.id, trigger: "MANUAL" });
    await started.promise;
    await new RunService(fx.db, fx.events).cancel(run.id);
    // The executor never returns on its own: the run can end only through the abort of its signal (30 s bounds a hang).
    const final = await fx.waitForRun(run.id, ended, 30_000);
    expect(reason).toBe("cancelled");
    expect(final.status).toBe("CANCELLED");
    const tasks = await fx.db.task.findMany({ where: { runId: run.id }, orderBy: { position: "asc" } });
    expect(tasks.map((t) => t.status)).toEqual(["CANCELLED", "CANCELLED"]);
  });

  it("ends a run FAILURE with the executor's error message when it throws", async () => {
    const job = await fx.job();
    backup = async () => {
      throw new Error("the pool answered HOST_OFFLINE");
    };
    const run = await machinery.launcher.launchRun({ jobId: job.id, trigger: "MANUAL" });
    const final = await fx.waitForRun(run.id, ended);
    expect(final).toMatchObject({ status: "FAILURE", error: "the pool answered HOST_OFFLINE" });
    expect(await fx.db.task.findFirst({ where: { runId: run.id, parentId: null } })).toMatchObject({
      status: "FAILURE",
      message: "the pool answered HOST_OFFLINE",
    });
  });

  it("records SKIPPED and FAILURE outcomes with their reasons", async () => {
    backup = async () => ({ status: "SKIPPED", error: "no VM matched the selection" });
    const skipped = await machinery.launcher.launchRun({ jobId: (await fx.job()).id, trigger: "MANUAL" });
    expect(await fx.waitForRun(skipped.id, ended)).toMatchObject({ status: "SKIPPED", error: "no VM matched the selection" });
    backup = async () => ({ status: "FAILURE", error: "every target failed" });
    const failed = await machinery.launcher.launchRun({ jobId: (await fx.job()).id, trigger: "MANUAL" });
    expect(await fx.waitForRun(failed.id, ended)).toMatchObject({ status: "FAILURE", error: "every target failed" });
  });

  it("stops a run that outlives the job's timeout and ends it FAILURE 'timed out'", async () => {
    const job = await fx.job({ timeoutSeconds: 1 });
    let reason: unknown;
    backup = async ({ signal }) => {
      reason = await aborted(signal);
      throw new Error("aborted");
    };
    const run = await machinery.launcher.launchRun({ jobId: job.id, trigger: "MANUAL" });
    const final = await fx.waitForRun(run.id, ended, 30_000);
    expect(reason).toBe("timeout");
    expect(final.status).toBe("FAILURE");
    expect(final.error).toMatch(/timed out after 1 s/);
  });

  it("coalesces progress: 100 calls in a tight loop give a handful of events, the last one with the final status", async () => {
    const job = await fx.job();
    let taskId = "";
    backup = async ({ root }: RunContext) => {
      const transfer = await root.child("transfer", "transfer");
      taskId = transfer.id;
      for (let i = 1; i <= 100; i++) transfer.progress(i / 100, i * 1000);
      await transfer.succeed({ size: 100_000 });
      return { status: "SUCCESS" };
    };
    // The status read at each event of the task (after the write that event announces).
    const states: { status: string; progress: number }[] = [];
    const abort = new AbortController();
    const watching = (async () => {
      for await (const event of fx.events.subscribe(abort.signal)) {
        if (event.type === "task" && event.taskId === taskId) {
          states.push(await fx.db.task.findUniqueOrThrow({ where: { id: taskId }, select: { status: true, progress: true } }));
        }
      }
    })();
    const run = await machinery.launcher.launchRun({ jobId: job.id, trigger: "MANUAL" });
    await fx.waitForRun(run.id, ended);
    await expect.poll(() => states.at(-1)?.status, { timeout: 30_000, message: "the task's final event" }).toBe("SUCCESS");
    abort.abort();
    await watching;
    expect(states.length).toBeGreaterThanOrEqual(2);
    expect(states.length).toBeLessThanOrEqual(5);
    expect(states.at(-1)).toEqual({ status: "SUCCESS", progress: 1 });
    expect(await fx.db.task.findUniqueOrThrow({ where: { id: taskId } })).toMatchObject({ sizeBytes: 100_000n });
  });
});

describe("stopping a process", () => {
  let fx: RunFixture;
  beforeAll(async () => (fx = await createRunFixture()));
  afterAll(async () => fx?.close());

  it("aborts running executors with reason 'shutdown' and ends their runs INTERRUPTED: no run is left RUNNING", async () => {
    const started = deferred();
    let reason: unknown;
    const machinery = await fx.machinery({
      executors: {
        BACKUP: async ({ root, signal }) => {
          await root.child("vm", "VM one");
          started.resolve();
          reason = await aborted(signal);
          throw new Error("stopped");
        },
      },
    });
    const job = await fx.job();
    const run = await machinery.launcher.launchRun({ jobId: job.id, trigger: "MANUAL" });
    await started.promise;
    await machinery.stop();
    expect(reason).toBe("shutdown");
    const final = await fx.db.run.findUniqueOrThrow({ where: { id: run.id } });
    expect(final).toMatchObject({ status: "INTERRUPTED", error: SHUTDOWN_MESSAGE });
    expect(await fx.db.task.count({ where: { runId: run.id, status: "RUNNING" } })).toBe(0);
  });

  it("ends INTERRUPTED a run whose executor ignores its signal, after the grace period", async () => {
    const started = deferred();
    const never = deferred();
    const machinery = await fx.machinery({
      executors: {
        BACKUP: async () => {
          started.resolve();
          await never.promise;
          return { status: "SUCCESS" };
        },
      },
      timing: { heartbeatMs: 300, sweepIntervalMs: 500, pollingIntervalSeconds: 0.5, tickMs: 1000, stopGraceMs: 500 },
    });
    const run = await machinery.launcher.launchRun({ jobId: (await fx.job()).id, trigger: "MANUAL" });
    await started.promise;
    await machinery.stop();
    expect(await fx.db.run.findUniqueOrThrow({ where: { id: run.id } })).toMatchObject({ status: "INTERRUPTED", error: SHUTDOWN_MESSAGE });
    never.resolve();
  });
});
