/**
 * Fires schedules, once across every Cairn process on one database.
 *
 * Each process ticks every `tickMs` and also wakes at the exact next fire time. A tick reads "now" from the database (one
 * clock for the whole cluster), computes with croner every fire time of every enabled schedule of every enabled job in
 * (last check, now], and records a run for each through RunLauncher.launchScheduled. The unique (scheduleId, scheduledFor)
 * of Run makes the same fire recorded by two processes (or two ticks) one run: the loser's insert fails and is ignored.
 *
 * Old fires are not backfilled: the window never starts earlier than `maxCatchUpMs` before now (a process that was down for
 * an hour does not start an hour of missed backups at once), and the first window starts when the ticker starts.
 *
 * Time comes from two injectable places: `now` (where "now" is read: the database by default) and `clock` (this process's
 * timers, and the time compared with the database's for the skew warning). Tests pass a manual clock for both.
 */
import { Cron } from "croner";
import { systemClock, type Clock } from "../domain/clock.js";
import type { Db } from "../db/prisma.js";
import type { Logger } from "../log.js";
import type { RunLauncher } from "../runs/run-launcher.js";
import { databaseNow } from "../runs/runs.sql.js";

export interface ScheduleTickerOptions {
  db: Db;
  log: Logger;
  launcher: RunLauncher;
  /** @default 10000 */
  tickMs?: number;
  /** @default 60000 */
  maxCatchUpMs?: number;
  /** Warn when this process's clock differs from the database's by more than this. @default 30000 */
  clockSkewWarnMs?: number;
  /** This process's clock: the wake-up timers, and the local time compared with `now()` for the skew warning. @default systemClock */
  clock?: Clock;
  /**
   * Where a tick reads "now". @default the database's time, so that every process computes the same windows; a test passes
   * its manual clock's time.
   */
  now?: () => Promise<Date>;
}

export interface ScheduleTicker {
  /** One tick now; returns the runs it recorded (PENDING or SKIPPED). Ticks never overlap. */
  tick(): Promise<number>;
  stop(): Promise<void>;
}

export async function startScheduleTicker(options: ScheduleTickerOptions): Promise<ScheduleTicker> {
  const { db, log, launcher } = options;
  const tickMs = options.tickMs ?? 10_000;
  const maxCatchUpMs = options.maxCatchUpMs ?? 60_000;
  const skewWarnMs = options.clockSkewWarnMs ?? 30_000;
  const clock = options.clock ?? systemClock;
  const readNow = options.now ?? dbNow;
  let lastCheck = await readNow();
  let stopped = false;
  let cancelTimer: (() => void) | undefined;
  let current: Promise<number> = Promise.resolve(0);
  let skewWarned = false;

  async function dbNow(): Promise<Date> {
    const [row] = await db.$queryRaw<{ now: Date }[]>(databaseNow());
    return new Date(row.now);
  }

  const tickOnce = async (): Promise<number> => {
    const now = await readNow();
    const skew = clock.now().getTime() - now.getTime();
    if (Math.abs(skew) > skewWarnMs && !skewWarned) {
      log.warn({ skewMs: skew }, "this process's clock differs from the database's by more than 30 s; schedules use the database's time");
    }
    skewWarned = Math.abs(skew) > skewWarnMs;
    const from = new Date(Math.max(lastCheck.getTime(), now.getTime() - maxCatchUpMs));
    const schedules = await db.schedule.findMany({
      where: { enabled: true, job: { enabled: true } },
      select: { id: true, jobId: true, cron: true, timezone: true },
    });
    let recorded = 0;
    let nextWake: number | undefined;
    for (const schedule of schedules) {
      let cron: Cron;
      try {
        cron = new Cron(schedule.cron, { timezone: schedule.timezone });
      } catch (error) {
        log.error(
          { err: error, scheduleId: schedule.id, cron: schedule.cron, timezone: schedule.timezone },
          "a schedule has an invalid cron or time zone; it never fires",
        );
        continue;
      }
      let fire = cron.nextRun(from);
      while (fire && fire.getTime() <= now.getTime()) {
        try {
          if (await launcher.launchScheduled({ jobId: schedule.jobId, scheduleId: schedule.id, scheduledFor: fire })) recorded++;
        } catch (error) {
          log.error({ err: error, scheduleId: schedule.id, scheduledFor: fire }, "could not record a scheduled run");
        }
        fire = cron.nextRun(fire);
      }
      if (fire) nextWake = Math.min(nextWake ?? Infinity, fire.getTime() - now.getTime());
    }
    lastCheck = now;
    arm(nextWake);
    return recorded;
  };

  const tick = (): Promise<number> => {
    const next = current.then(() => (stopped ? 0 : tickOnce()));
    current = next.catch((error: unknown) => {
      log.error({ err: error }, "the schedule tick failed");
      arm(undefined);
      return 0;
    });
    return next;
  };

  /** Wakes at the next fire time when it comes before the next regular tick (a little after it, so that it is in the window). */
  function arm(msToNextFire: number | undefined): void {
    cancelTimer?.();
    if (stopped) return;
    const wait = Math.max(0, Math.min(tickMs, msToNextFire === undefined ? tickMs : msToNextFire + 5));
    cancelTimer = clock.setTimeout(() => tick().catch(() => undefined), wait);
  }

  // The first tick at once: it computes when to wake next.
  arm(0);
  return {
    tick,
    async stop() {
      stopped = true;
      cancelTimer?.();
      await current;
    },
  };
}
