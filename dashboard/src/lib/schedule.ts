/**
 * Cron previews for the schedule editor: the expression in words (cronstrue) and its next run times in the schedule's
 * time zone (croner, the library the server schedules with, so both agree on what an expression means).
 */
import { Cron } from "croner";
import cronstrue from "cronstrue";

export interface CronPreview {
  /** The expression in words, or null when it is not valid. */
  description: string | null;
  /** The next fire times, soonest first. */
  nextRuns: Date[];
  /** Why the expression or time zone cannot be used, in words. */
  error: string | null;
}

/** Whether the browser knows this IANA time zone. */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** Describes `cron` read in `timezone`, with its next `count` runs after `from`. */
export function previewCron(cron: string, timezone: string, count = 3, from = new Date()): CronPreview {
  const expression = cron.trim();
  if (!expression) return { description: null, nextRuns: [], error: "Enter a cron expression, e.g. 0 2 * * * for 02:00 every day." };
  if (!isTimeZone(timezone))
    return {
      description: null,
      nextRuns: [],
      error: `${timezone || "(empty)"} is not a time zone this browser knows (e.g. Europe/Paris, UTC).`,
    };
  let nextRuns: Date[];
  try {
    nextRuns = new Cron(expression, { timezone, paused: true }).nextRuns(count, from);
  } catch (error) {
    return { description: null, nextRuns: [], error: `Not a valid cron expression: ${(error as Error).message}` };
  }
  // The server's rule (server/domain/schedule.ts): a seconds field (the first of 6 or 7) is one fixed number, and a cron
  // fires at least once.
  const fields = expression.split(/\s+/);
  if (!expression.startsWith("@") && fields.length >= 6 && !/^\d{1,2}$/.test(fields[0])) {
    return {
      description: null,
      nextRuns,
      error:
        "This fires more than once a minute: use 5 fields (minute hour day month weekday), or give the seconds field (the first of 6 or 7) one fixed number such as 0.",
    };
  }
  if (nextRuns.length === 0) {
    return {
      description: null,
      nextRuns,
      error: "This never fires: no date from now on matches it (such as 31 February, or a year that has passed).",
    };
  }
  let description: string | null = null;
  try {
    description = cronstrue.toString(expression, { use24HourTimeFormat: true, verbose: false });
  } catch {
    description = null; // croner accepts a few forms cronstrue does not word; the run times still say it all
  }
  return { description, nextRuns, error: null };
}

/** Time zones to offer: the browser's list when it has one. */
export function timeZones(): string[] {
  const supported = (Intl as unknown as { supportedValuesOf?: (key: string) => string[] }).supportedValuesOf?.("timeZone");
  const zones = supported && supported.length > 0 ? supported : ["UTC"];
  return zones.includes("UTC") ? zones : ["UTC", ...zones];
}
