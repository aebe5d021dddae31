/** When schedules fire: cron expressions read in an IANA time zone, and the rules a schedule's cron must follow. */
import { Cron } from "croner";

/** A schedule fires at most once in this many seconds: each run is a snapshot of every selected VM. */
export const MIN_SCHEDULE_INTERVAL_SECONDS = 60;

/** Most schedules one job may have. */
export const MAX_SCHEDULES_PER_JOB = 20;

/** The cron forms a schedule accepts, in the words of every error about one. */
export const CRON_FORMS =
  'accepted: 5 fields "minute hour day month weekday" (e.g. "0 2 * * *" for 02:00 daily); 6 fields with a leading fixed second ' +
  '("0 0 2 * * *"); 7 fields adding a year ("0 0 2 * * * 2030"); or @hourly, @daily, @weekly, @monthly, @yearly';

/** How many next fire times are compared: enough to see any sub-minute pattern a structural rule could have missed. */
const SAMPLED_FIRE_TIMES = 16;

export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/**
 * Why a schedule's cron is refused, in words for a person (null: accepted). The time zone must be valid (checked first).
 *
 * Two rules together, because croner accepts more than the classic 5 fields: structurally, a seconds field (the first of 6
 * or 7) must be one fixed number, so no pattern can fire twice in a minute whatever its other fields; and the next fire
 * times, computed, are never closer than {@link MIN_SCHEDULE_INTERVAL_SECONDS}, which would catch a syntax croner learns later.
 * A cron that matches no date from `now` on (31 February, a past year) is refused too: it would never run.
 */
export function cronProblem(cron: string, timezone: string, now = new Date()): string | null {
  let parsed: Cron;
  try {
    parsed = new Cron(cron, { timezone, paused: true });
  } catch (error) {
    const reason = error instanceof Error ? error.message.replace(/^CronPattern:\s*/, "") : String(error);
    return `${JSON.stringify(cron)} is not a valid cron expression (${reason}); ${CRON_FORMS}`;
  }
  const fields = cron.trim().split(/\s+/);
  if (!cron.trim().startsWith("@") && fields.length >= 6 && !/^\d{1,2}$/.test(fields[0])) {
    return (
      `${JSON.stringify(cron)} can fire more than once a minute: its seconds field (the first of ${fields.length}) must be one ` +
      `fixed number such as 0, not ${JSON.stringify(fields[0])}; ${CRON_FORMS}`
    );
  }
  const times = parsed.nextRuns(SAMPLED_FIRE_TIMES, now);
  if (times.length === 0) {
    return `${JSON.stringify(cron)} never fires: no date from now on matches it (such as 31 February, or a year that has passed)`;
  }
  for (let i = 1; i < times.length; i++) {
    const gap = (times[i].getTime() - times[i - 1].getTime()) / 1000;
    if (gap < MIN_SCHEDULE_INTERVAL_SECONDS) {
      return (
        `${JSON.stringify(cron)} fires more than once a minute (${times[i - 1].toISOString()} then ${times[i].toISOString()}): ` +
        `a schedule may fire at most once every ${MIN_SCHEDULE_INTERVAL_SECONDS} seconds; ${CRON_FORMS}`
      );
    }
  }
  return null;
}

/** When a schedule fires next (null when disabled or never). */
export function nextRunAt(schedule: { cron: string; timezone: string; enabled: boolean }, after = new Date()): Date | null {
  if (!schedule.enabled) return null;
  return new Cron(schedule.cron, { timezone: schedule.timezone, paused: true }).nextRun(after) ?? null;
}

/**
 * The next fire time of a cron in a time zone strictly after `after` (null when it never fires again).
 * @throws when the cron or the time zone is invalid
 */
export function nextFireTime(cron: string, timezone: string, after: Date): Date | null {
  return new Cron(cron, { timezone }).nextRun(after);
}
