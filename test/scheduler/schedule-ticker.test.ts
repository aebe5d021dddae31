/**
 * Schedules fire once across processes: two run machineries tick on one database with a schedule firing every 2 seconds;
 * each fire time gives exactly one run, on time (the ticker wakes at the exact fire time, not only every 10 s).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUSY_JOB_MESSAGE } from "../../server/runs/run-launcher.js";
import { nextFireTime } from "../../server/domain/schedule.js";
import { createRunFixture, deferred, FAST_TIMING, type RunFixture } from "./run-fixture.js";

const EVERY_2_S = "*/2 * * * * *";
/** Production tick: fires between ticks must come from the exact-time wake-up. */
const TIMING = { ...FAST_TIMING, tickMs: 10_000 };

describe("the schedule ticker", () => {
  let fx: RunFixture;
  beforeAll(async () => (fx = await createRunFixture()));
  afterAll(async () => fx?.close());

  async function scheduledRuns(scheduleId: string, count: number, ms = 12_000) {
    await expect
      .poll(() => fx.db.run.count({ where: { scheduleId } }), { timeout: ms, interval: 250, message: `${count} runs of schedule ${scheduleId}` })
      .toBeGreaterThanOrEqual(count);
    return fx.db.run.findMany({ where: { scheduleId }, orderBy: { scheduledFor: "asc" } });
  }

  it("records one run per fire time with two processes ticking, each on time, and executes each once", async () => {
    const executed: string[] = [];
    const executors = { BACKUP: async ({ run }: { run: { id: string } }) => (executed.push(run.id), { status: "SUCCESS" as const }) };
    const a = await fx.machinery({ executors, timing: TIMING });
    const b = await fx.machinery({ executors, timing: TIMING });
    const job = await fx.job();
    const schedule = await fx.db.schedule.create({ data: { jobId: job.id, cron: EVERY_2_S, timezone: "Europe/Paris" } });

    const runs = await scheduledRuns(schedule.id, 3);
    await fx.db.schedule.update({ where: { id: schedule.id }, data: { enabled: false } });
    await a.stop();
    await b.stop();

    const all = await fx.db.run.findMany({ where: { scheduleId: schedule.id }, orderBy: { scheduledFor: "asc" } });
    const times = all.map((r) => r.scheduledFor!.getTime());
    // Consecutive fire times, two seconds apart: none missed, none twice.
    for (let i = 1; i < times.length; i++) expect(times[i] - times[i - 1]).toBe(2000);
    expect(times.every((t) => t % 2000 === 0)).toBe(true);
    for (const run of runs) {
      expect(run.trigger).toBe("SCHEDULE");
      // Created within a second of its fire time although the regular tick is 10 s.
      expect(run.createdAt.getTime() - run.scheduledFor!.getTime()).toBeLessThan(1000);
    }
    const finished = all.filter((r) => r.status === "SUCCESS");
    expect(finished.length).toBeGreaterThanOrEqual(2);
    expect(new Set(executed).size).toBe(executed.length);
  });

  it("records a fire that comes while the job is still running as SKIPPED, saying why", async () => {
    const release = deferred();
    const machinery = await fx.machinery({ executors: { BACKUP: async () => (await release.promise, { status: "SUCCESS" }) }, timing: TIMING });
    const job = await fx.job();
    const schedule = await fx.db.schedule.create({ data: { jobId: job.id, cron: EVERY_2_S } });
    const runs = await scheduledRuns(schedule.id, 2);
    await fx.db.schedule.update({ where: { id: schedule.id }, data: { enabled: false } });
    release.resolve();
    const [first, second] = runs;
    expect(first.status).not.toBe("SKIPPED");
    expect(second).toMatchObject({ status: "SKIPPED" });
    expect(second.error).toContain(BUSY_JOB_MESSAGE);
    expect(second.error).toContain(first.id);
    expect((await fx.waitForRun(first.id, (r) => r.status === "SUCCESS")).status).toBe("SUCCESS");
    await machinery.stop();
  });

  it("does not fire the schedules of a disabled job", async () => {
    const machinery = await fx.machinery({ executors: { BACKUP: async () => ({ status: "SUCCESS" }) }, timing: { ...FAST_TIMING, tickMs: 300 } });
    const disabled = await fx.db.job.create({ data: { name: "disabled job", mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {}, enabled: false } });
    const schedule = await fx.db.schedule.create({ data: { jobId: disabled.id, cron: EVERY_2_S } });
    // A control schedule on an enabled job proves that fire times passed meanwhile.
    const control = await fx.db.schedule.create({ data: { jobId: (await fx.job()).id, cron: EVERY_2_S } });
    await scheduledRuns(control.id, 2);
    await fx.db.schedule.update({ where: { id: control.id }, data: { enabled: false } });
    expect(await fx.db.run.count({ where: { scheduleId: schedule.id } })).toBe(0);
    await machinery.stop();
  });

  it("records a fire time once however many times it is fired (the unique schedule and fire time)", async () => {
    const machinery = await fx.machinery({ executors: { BACKUP: async () => ({ status: "SUCCESS" }) }, scheduler: false });
    const job = await fx.job();
    const schedule = await fx.db.schedule.create({ data: { jobId: job.id, cron: "0 3 * * *", enabled: false } });
    const scheduledFor = new Date("2026-01-01T03:00:00Z");
    const fires = await Promise.all([1, 2, 3].map(() => machinery.launcher.launchScheduled({ jobId: job.id, scheduleId: schedule.id, scheduledFor })));
    expect(fires.filter((run) => run !== null)).toHaveLength(1);
    expect(await fx.db.run.count({ where: { scheduleId: schedule.id } })).toBe(1);
    await machinery.stop();
  });

  it("computes the next fire time in the schedule's time zone", () => {
    const after = new Date("2026-03-28T12:00:00Z");
    // 03:00 in Paris: UTC+1 on the 28th, UTC+2 after the switch to summer time on the 29th.
    expect(nextFireTime("0 3 * * *", "Europe/Paris", after)?.toISOString()).toBe("2026-03-29T01:00:00.000Z");
    expect(nextFireTime("0 3 * * *", "UTC", after)?.toISOString()).toBe("2026-03-29T03:00:00.000Z");
  });
});
