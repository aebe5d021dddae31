/**
 * Schedules fire once across processes: two run machineries tick on one database with a schedule firing every 2 seconds;
 * each fire time gives exactly one run, none is missed, and a fire between two regular ticks (every 10 s) comes from the
 * wake-up at the exact fire time. Time is a manual clock the test moves (the tickers read "now" from it instead of the
 * database), so nothing depends on how busy the machine is.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BUSY_JOB_MESSAGE } from "../../server/runs/run-launcher.js";
import { nextFireTime } from "../../server/domain/schedule.js";
import { manualClock } from "../support/manual-clock.js";
import { createRunFixture, deferred, FAST_TIMING, type RunFixture } from "./run-fixture.js";

const EVERY_2_S = "*/2 * * * * *";
/** Production tick: fires between ticks must come from the exact-time wake-up. */
const TIMING = { ...FAST_TIMING, tickMs: 10_000 };
/** Half a second before a fire time of EVERY_2_S. */
const START = Date.parse("2026-06-01T10:00:01.500Z");
const at = (iso: string) => Date.parse(`2026-06-01T${iso}Z`);

describe("the schedule ticker", () => {
  let fx: RunFixture;
  beforeAll(async () => (fx = await createRunFixture()));
  afterAll(async () => fx?.close());
  // A failed test leaves no schedule firing into the next one.
  afterEach(async () => {
    await fx.db.schedule.updateMany({ data: { enabled: false } });
    await fx.stopMachineries();
  });

  const fireTimes = async (scheduleId: string) =>
    (await fx.db.run.findMany({ where: { scheduleId }, orderBy: { scheduledFor: "asc" } })).map((run) => run.scheduledFor!.toISOString());

  it("records one run per fire time with two processes ticking, at the exact fire time, and executes each once", async () => {
    const clock = manualClock(START);
    const executed: string[] = [];
    const executors = { BACKUP: async ({ run }: { run: { id: string } }) => (executed.push(run.id), { status: "SUCCESS" as const }) };
    const job = await fx.job();
    const schedule = await fx.db.schedule.create({ data: { jobId: job.id, cron: EVERY_2_S, timezone: "Europe/Paris" } });
    const a = await fx.machinery({ executors, timing: TIMING, clock });
    const b = await fx.machinery({ executors, timing: TIMING, clock });

    // The first ticks (at start) find the schedule and arm a wake-up just after its next fire time, long before the next tick.
    await clock.advanceTo(at("10:00:02.004"));
    expect(clock.pending()).toEqual([at("10:00:02.005"), at("10:00:02.005")]);
    expect(await fireTimes(schedule.id)).toEqual([]);

    await clock.advanceTo(at("10:00:02.005"));
    expect(await fireTimes(schedule.id)).toEqual(["2026-06-01T10:00:02.000Z"]);
    // Three more fire times one at a time, then three in one jump: none missed, none twice.
    for (const second of ["04", "06", "08"]) await clock.advanceTo(at(`10:00:${second}.005`));
    await clock.advanceTo(at("10:00:14.500"));
    const expected = ["02", "04", "06", "08", "10", "12", "14"].map((second) => `2026-06-01T10:00:${second}.000Z`);
    expect(await fireTimes(schedule.id)).toEqual(expected);

    await fx.db.schedule.update({ where: { id: schedule.id }, data: { enabled: false } });
    const runs = await fx.db.run.findMany({ where: { scheduleId: schedule.id } });
    expect(runs.every((run) => run.trigger === "SCHEDULE")).toBe(true);
    // Each run is executed once, by one of the two processes. Runs of one job execute one after the other; the fires that
    // came while one ran were recorded SKIPPED.
    for (const run of runs) await fx.waitForRun(run.id, (r) => r.status === "SUCCESS" || r.status === "SKIPPED", 30_000);
    const succeeded = (await fx.db.run.findMany({ where: { scheduleId: schedule.id, status: "SUCCESS" } })).map((run) => run.id);
    expect(succeeded.length).toBeGreaterThanOrEqual(1);
    expect([...executed].sort()).toEqual([...succeeded].sort());
    await a.stop();
    await b.stop();
  });

  it("records a fire that comes while the job is still running as SKIPPED, saying why", async () => {
    const clock = manualClock(START);
    const release = deferred();
    const job = await fx.job();
    const schedule = await fx.db.schedule.create({ data: { jobId: job.id, cron: EVERY_2_S } });
    const machinery = await fx.machinery({
      executors: { BACKUP: async () => (await release.promise, { status: "SUCCESS" }) },
      timing: TIMING,
      clock,
    });
    await clock.advanceTo(at("10:00:04.005"));
    await fx.db.schedule.update({ where: { id: schedule.id }, data: { enabled: false } });
    const [first, second, ...more] = await fx.db.run.findMany({ where: { scheduleId: schedule.id }, orderBy: { scheduledFor: "asc" } });
    expect(more).toEqual([]);
    expect(first.status).not.toBe("SKIPPED");
    expect(second).toMatchObject({ status: "SKIPPED", skipReason: "JOB_BUSY" });
    expect(second.error).toContain(BUSY_JOB_MESSAGE);
    expect(second.error).toContain(first.id);
    release.resolve();
    expect((await fx.waitForRun(first.id, (r) => r.status === "SUCCESS", 30_000)).status).toBe("SUCCESS");
    await machinery.stop();
  });

  it("does not fire the schedules of a disabled job", async () => {
    const clock = manualClock(START);
    const disabled = await fx.db.job.create({
      data: { name: "disabled job", mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {}, enabled: false },
    });
    const schedule = await fx.db.schedule.create({ data: { jobId: disabled.id, cron: EVERY_2_S } });
    // A control schedule on an enabled job proves that fire times passed meanwhile.
    const control = await fx.db.schedule.create({ data: { jobId: (await fx.job()).id, cron: EVERY_2_S } });
    const machinery = await fx.machinery({ executors: { BACKUP: async () => ({ status: "SUCCESS" }) }, timing: TIMING, clock });
    await clock.advanceTo(at("10:00:04.005"));
    await fx.db.schedule.update({ where: { id: control.id }, data: { enabled: false } });
    expect(await fireTimes(control.id)).toEqual(["2026-06-01T10:00:02.000Z", "2026-06-01T10:00:04.000Z"]);
    expect(await fx.db.run.count({ where: { scheduleId: schedule.id } })).toBe(0);
    await machinery.stop();
  });

  it("picks up a schedule created after a tick at the next regular tick, without backfilling older fires", async () => {
    const clock = manualClock(START);
    const machinery = await fx.machinery({ executors: { BACKUP: async () => ({ status: "SUCCESS" }) }, timing: TIMING, clock });
    await clock.advance(100); // the first tick, at start: no schedule, so the next wake-up is the regular tick
    const [regularTick, ...others] = clock.pending();
    expect(others).toEqual([]);
    expect(regularTick - START).toBeGreaterThanOrEqual(TIMING.tickMs);
    expect(regularTick - START).toBeLessThanOrEqual(TIMING.tickMs + 100);
    const job = await fx.job();
    const schedule = await fx.db.schedule.create({ data: { jobId: job.id, cron: "*/5 * * * * *" } });
    await clock.advanceTo(regularTick - 1);
    expect(await fireTimes(schedule.id)).toEqual([]);
    // The regular tick: the fires of the window since the first tick, none before it.
    await clock.advanceTo(regularTick);
    expect(await fireTimes(schedule.id)).toEqual(["2026-06-01T10:00:05.000Z", "2026-06-01T10:00:10.000Z"]);
    await fx.db.schedule.update({ where: { id: schedule.id }, data: { enabled: false } });
    await machinery.stop();
  });

  it("records a fire time once however many times it is fired (the unique schedule and fire time)", async () => {
    const machinery = await fx.machinery({ executors: { BACKUP: async () => ({ status: "SUCCESS" }) }, scheduler: false });
    const job = await fx.job();
    const schedule = await fx.db.schedule.create({ data: { jobId: job.id, cron: "0 3 * * *", enabled: false } });
    const scheduledFor = new Date("2026-01-01T03:00:00Z");
    const fires = await Promise.all(
      [1, 2, 3].map(() => machinery.launcher.launchScheduled({ jobId: job.id, scheduleId: schedule.id, scheduledFor })),
    );
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
