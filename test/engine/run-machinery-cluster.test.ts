/**
 * Several Cairn "processes" (run machineries) on one database: every run executes exactly once, and runs left RUNNING by a
 * dead process become INTERRUPTED (at start, and by the sweeper when a heartbeat expires); lost PENDING runs are queued again.
 */
import { hostname } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INTERRUPTED_MESSAGE_AFTER, INTERRUPTED_MESSAGE_BEFORE } from "../../server/runs/run-recovery.js";
import type { RunExecutor } from "../../server/engine/run-executor.js";
import { createRunFixture, type RunFixture } from "../scheduler/run-fixture.js";
import { eventually } from "../support/eventually.js";

const ended = (run: { status: string }) => !["PENDING", "RUNNING"].includes(run.status);

describe("two processes on one database", () => {
  let fx: RunFixture;
  beforeAll(async () => (fx = await createRunFixture()));
  afterAll(async () => fx?.close());

  it("executes each of 10 launched runs exactly once across two workers", async () => {
    const executions = new Map<string, string[]>();
    const executor =
      (name: string): RunExecutor =>
      async ({ run, root }) => {
        executions.set(run.id, [...(executions.get(run.id) ?? []), name]);
        await root.run("step", "step", async () => ({}));
        return { status: "SUCCESS" };
      };
    const a = await fx.machinery({ executors: { BACKUP: executor("a"), RESTORE: executor("a") }, concurrency: 2 });
    const b = await fx.machinery({ executors: { BACKUP: executor("b"), RESTORE: executor("b") }, concurrency: 2 });
    const runs = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const launcher = i % 2 === 0 ? a.launcher : b.launcher;
        return i < 6
          ? launcher.launchRun({ jobId: (await fx.job()).id, trigger: "MANUAL" })
          : launcher.launchStandalone({ kind: "RESTORE", params: { restorePointId: `rp-${i}` } });
      }),
    );
    const finals = await Promise.all(runs.map((run) => fx.waitForRun(run.id, ended, 20_000)));
    expect(finals.map((r) => r.status)).toEqual(Array(10).fill("SUCCESS"));
    for (const run of runs) expect(executions.get(run.id), `executions of run ${run.id}`).toHaveLength(1);
    expect(new Set(finals.map((r) => r.workerId)).size).toBeGreaterThanOrEqual(1);
    expect(finals.every((r) => r.workerId === a.workerId || r.workerId === b.workerId)).toBe(true);
    const restore = await fx.db.run.findUniqueOrThrow({ where: { id: runs[9].id } });
    expect(restore).toMatchObject({ kind: "RESTORE", jobId: null, params: { restorePointId: "rp-9" } });
    await a.stop();
    await b.stop();
  });
});

describe("recovery of runs whose process died", () => {
  let fx: RunFixture;
  beforeAll(async () => (fx = await createRunFixture()));
  afterAll(async () => fx?.close());

  /** A run as a killed process leaves it: RUNNING, with a RUNNING task tree. */
  async function orphan(workerId: string, heartbeatAgoMs: number) {
    const job = await fx.job();
    const at = new Date(Date.now() - heartbeatAgoMs);
    const run = await fx.db.run.create({
      data: { jobId: job.id, trigger: "MANUAL", status: "RUNNING", workerId, startedAt: at, heartbeatAt: at },
    });
    const root = await fx.db.task.create({ data: { runId: run.id, position: 0, kind: "run", name: "run" } });
    await fx.db.task.create({ data: { runId: run.id, parentId: root.id, position: 1, kind: "vm", name: "VM" } });
    await fx.db.task.create({
      data: { runId: run.id, parentId: root.id, position: 2, kind: "vm", name: "VM done", status: "SUCCESS", endedAt: at },
    });
    return { job, run };
  }

  it("at start, interrupts a RUNNING run whose worker pid on this host is dead, and the next run of its job works", async () => {
    // pid 2^22 + 1 is above Linux's pid_max: no such process.
    const { job, run } = await orphan(`${hostname()}/4194305/deadbeef`, 0);
    // A run of a live worker elsewhere (fresh heartbeat) is left alone.
    const alive = await orphan("another-host/123/cafe", 0);
    const interrupted: string[] = [];
    const machinery = await fx.machinery({
      executors: { BACKUP: async () => ({ status: "SUCCESS" }) },
      onInterrupted: [(r) => void interrupted.push(r.id)],
    });

    const final = await fx.db.run.findUniqueOrThrow({ where: { id: run.id } });
    expect(final.status).toBe("INTERRUPTED");
    expect(final.error!.startsWith(INTERRUPTED_MESSAGE_BEFORE)).toBe(true);
    expect(final.error!.endsWith(INTERRUPTED_MESSAGE_AFTER)).toBe(true);
    expect(final.error!.slice(INTERRUPTED_MESSAGE_BEFORE.length, -INTERRUPTED_MESSAGE_AFTER.length)).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
    );
    expect(final.endedAt).not.toBeNull();
    const tasks = await fx.db.task.findMany({ where: { runId: run.id }, orderBy: { position: "asc" } });
    expect(tasks.map((t) => t.status)).toEqual(["INTERRUPTED", "INTERRUPTED", "SUCCESS"]);
    expect(interrupted).toEqual([run.id]);
    expect((await fx.db.run.findUniqueOrThrow({ where: { id: alive.run.id } })).status).toBe("RUNNING");

    const next = await machinery.launcher.launchRun({ jobId: job.id, trigger: "MANUAL" });
    expect((await fx.waitForRun(next.id, ended)).status).toBe("SUCCESS");
    await fx.db.run.update({ where: { id: alive.run.id }, data: { status: "FAILURE" } });
    await machinery.stop();
  });

  it("interrupts, through the sweeper of a live process, a run whose heartbeat expired on another host", async () => {
    const interrupted: string[] = [];
    const machinery = await fx.machinery({
      executors: { BACKUP: async () => ({ status: "SUCCESS" }) },
      timing: { heartbeatMs: 300, heartbeatTimeoutSeconds: 2, sweepIntervalMs: 300, pollingIntervalSeconds: 0.5, tickMs: 1000 },
      onInterrupted: [(r) => void interrupted.push(r.id)],
    });
    // Its heartbeat is fresh now and expires two seconds later: the periodic sweep, not the start, must catch it.
    const { run } = await orphan("far-host/77/0a0b", 0);
    const final = await fx.waitForRun(run.id, ended, 30_000);
    expect(final.status).toBe("INTERRUPTED");
    expect(final.error).toContain("stopped (crash or kill)");
    // The hooks run right after the run is marked and its event sent: the event can reach this test first.
    await eventually("the onInterrupted hooks to run", () => expect(interrupted).toEqual([run.id]));
    await machinery.stop();
  });

  it("keeps a worker's own long run alive with heartbeats while another process sweeps", async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    // The heartbeat timeout is 10 heartbeats: a busy machine's stall of one or two heartbeats is not a dead worker.
    const timing = { heartbeatMs: 200, heartbeatTimeoutSeconds: 2, sweepIntervalMs: 200, pollingIntervalSeconds: 0.5, tickMs: 1000 };
    const worker = await fx.machinery({ executors: { BACKUP: async () => (await released, { status: "SUCCESS" }) }, timing });
    const sweeper = await fx.machinery({ executors: {}, timing, worker: false });
    const run = await worker.launcher.launchRun({ jobId: (await fx.job()).id, trigger: "MANUAL" });
    await fx.waitForRun(run.id, (r) => r.status === "RUNNING");
    // Several heartbeat timeouts pass: wait for the heartbeat to be renewed past the timeout rather than for a fixed time.
    const first = (await fx.db.run.findUniqueOrThrow({ where: { id: run.id } })).heartbeatAt!.getTime();
    await expect
      .poll(async () => (await fx.db.run.findUniqueOrThrow({ where: { id: run.id } })).heartbeatAt!.getTime() - first, {
        timeout: 60_000,
        interval: 200,
        message: "the heartbeat renewed past two timeouts",
      })
      .toBeGreaterThan(4000);
    expect((await fx.db.run.findUniqueOrThrow({ where: { id: run.id } })).status).toBe("RUNNING");
    release();
    expect((await fx.waitForRun(run.id, ended)).status).toBe("SUCCESS");
    await sweeper.stop();
    await worker.stop();
  });

  it("queues again a PENDING run whose queue job was lost, and runs it", async () => {
    const job = await fx.job();
    // As a launcher that died between the insert and the enqueue leaves it.
    const run = await fx.db.run.create({ data: { jobId: job.id, trigger: "MANUAL" } });
    await fx.machinery({ executors: { BACKUP: async () => ({ status: "SUCCESS" }) } });
    expect((await fx.waitForRun(run.id, ended)).status).toBe("SUCCESS");
  });
});
