/** When schedules fire: cron expressions read in an IANA time zone. */
import { Cron } from "croner";

export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
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
