/**
 * Which backups a schedule's retention keeps: the newest N, plus grandfather-father-son (GFS) points, the oldest backup of
 * each of the last D days, W weeks, M months and Y years, read in the schedule's time zone. Pure: a list of backups, a policy
 * and "now" in, a decision with its reasons for each backup out; retention (server/repository/retention.ts) and the
 * retentionPreview query both decide with it, so what the preview says is what a run does.
 *
 * Calendar rules, all in `timeZone`:
 * - A day starts at `dayStartHour`:00 local wall-clock time (the first instant whose local time is at or after it, so on a
 *   day whose clocks jump over that hour it starts when they land). A day of 23 or 25 hours (a DST change) is one day.
 *   Days are read from the wall clock (its date, less the day start hour): that is exact wherever clocks move by whole
 *   hours, or at least never go back across a whole hour, which holds for every zone in use.
 * - A week starts on `weekStart` (MONDAY: ISO weeks, named 2026-W13; SUNDAY: named by the date of its Sunday); a month and a
 *   year start with their first day (at `dayStartHour`).
 * - "The last D days" are the D calendar days ending with the one holding `now` (today counts; days without a backup count
 *   too, so a schedule that was paused keeps nothing for the days it did not run).
 * - The oldest backup of a period is kept rather than the newest: it no longer changes once the period has one, so the
 *   point kept for a day is the same at every run of that day.
 */

export type WeekStart = "MONDAY" | "SUNDAY";

export interface GfsPolicy {
  /** The newest backups kept whatever their age (exportRetention). */
  keepLast: number;
  /** The oldest backup of each of the last this many days, weeks, months, years (0: none). */
  days: number;
  weeks: number;
  months: number;
  years: number;
  /** IANA time zone the calendar is read in (the schedule's). */
  timeZone: string;
  weekStart: WeekStart;
  /** Local hour (0-23) at which a day starts. */
  dayStartHour: number;
}

export interface RetentionCandidate {
  id: string;
  /** When the backup was taken (ms since the epoch, or a Date). */
  timestamp: number | Date;
}

export interface RetentionDecision {
  id: string;
  timestamp: number;
  keep: boolean;
  /** Why it is kept (each rule that keeps it), or, for a backup removed, one sentence saying why none does. */
  reasons: string[];
}

/** GFS is off when every period count is 0. */
export function hasGfs(policy: Pick<GfsPolicy, "days" | "weeks" | "months" | "years">): boolean {
  return policy.days > 0 || policy.weeks > 0 || policy.months > 0 || policy.years > 0;
}

/**
 * The decision for each backup, in the order given. Backups are told apart by id; two with one timestamp are ordered by id
 * (the first by id is the older), so that the decision never depends on the order of the list.
 * @throws Error when the time zone is not an IANA time zone or a count is not a whole number >= 0
 */
export function decideRetention(backups: readonly RetentionCandidate[], policy: GfsPolicy, now: number | Date): RetentionDecision[] {
  checkPolicy(policy);
  const calendar = localCalendar(policy);
  const items = backups.map((backup) => ({ id: backup.id, timestamp: new Date(backup.timestamp).getTime() }));
  const newestFirst = [...items].sort((a, b) => b.timestamp - a.timestamp || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  const reasons = new Map<string, string[]>(items.map((item) => [item.id, []]));

  newestFirst.slice(0, policy.keepLast).forEach((item) => reasons.get(item.id)?.push(`newest ${policy.keepLast}`));

  const today = calendar.periodsOf(new Date(now).getTime());
  const rules: Array<{ count: number; kind: PeriodKind }> = [
    { count: policy.days, kind: "day" },
    { count: policy.weeks, kind: "week" },
    { count: policy.months, kind: "month" },
    { count: policy.years, kind: "year" },
  ];
  const oldestFirst = [...newestFirst].reverse();
  const periods = oldestFirst.map((item) => ({ item, periods: calendar.periodsOf(item.timestamp) }));
  for (const { count, kind } of rules) {
    if (count === 0) continue;
    const first = today[kind] - count + 1;
    const seen = new Set<number>();
    for (const { item, periods: of } of periods) {
      const period = of[kind];
      if (period < first || period > today[kind] || seen.has(period)) continue;
      seen.add(period);
      reasons.get(item.id)?.push(`oldest of ${kind} ${periodName(kind, period, policy.weekStart)}`);
    }
  }

  const removedWhy = removalReason(policy);
  return items.map((item) => {
    const why = reasons.get(item.id) ?? [];
    return why.length > 0 ? { ...item, keep: true, reasons: why } : { ...item, keep: false, reasons: [removedWhy] };
  });
}

/** The calendar periods (day, week, month, year) of an instant, in a policy's time zone and day boundary. */
export function periodsOf(timestamp: number | Date, policy: Pick<GfsPolicy, "timeZone" | "weekStart" | "dayStartHour">): Periods {
  const indexes = localCalendar(policy).periodsOf(new Date(timestamp).getTime());
  const period = (kind: PeriodKind): Period => ({ index: indexes[kind], name: periodName(kind, indexes[kind], policy.weekStart) });
  return { day: period("day"), week: period("week"), month: period("month"), year: period("year") };
}

export type PeriodKind = "day" | "week" | "month" | "year";

/** A period: `index` counts periods of its kind (consecutive periods differ by 1), `name` is what a person reads. */
export interface Period {
  index: number;
  name: string;
}

export type Periods = Record<PeriodKind, Period>;

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

function checkPolicy(policy: GfsPolicy): void {
  for (const key of ["keepLast", "days", "weeks", "months", "years"] as const) {
    const value = policy[key];
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${key} must be a whole number >= 0, got ${value}`);
  }
  if (!Number.isInteger(policy.dayStartHour) || policy.dayStartHour < 0 || policy.dayStartHour > 23)
    throw new Error(`dayStartHour must be a whole hour from 0 to 23, got ${policy.dayStartHour}`);
  if (policy.weekStart !== "MONDAY" && policy.weekStart !== "SUNDAY")
    throw new Error(`weekStart must be MONDAY or SUNDAY, got ${policy.weekStart}`);
}

/** One formatter per time zone: building one costs far more than using it. */
const wallClockFormats = new Map<string, Intl.DateTimeFormat>();

/**
 * UTC offsets by time zone and 15-minute slot: offset changes fall on a quarter hour (every one since 1973 does), so the
 * offset at a slot's start holds for the whole slot; formatToParts is slow, and a preview or a simulated clock asks for many
 * instants.
 */
const offsetsBySlot = new Map<string, Map<number, number>>();
const SLOT_MS = 15 * 60_000;
const MAX_CACHED_SLOTS = 200_000;

function wallClockFormat(timeZone: string): Intl.DateTimeFormat {
  let format = wallClockFormats.get(timeZone);
  if (!format) {
    // formatToParts with hourCycle h23 gives the local wall-clock time; throws a RangeError on an unknown zone.
    format = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    wallClockFormats.set(timeZone, format);
  }
  return format;
}

/** The local wall-clock time of an instant, written as if it were UTC (ms). */
function wallClockOf(timeZone: string, timestamp: number): number {
  const slot = Math.floor(timestamp / SLOT_MS) * SLOT_MS;
  let offsets = offsetsBySlot.get(timeZone);
  if (!offsets) {
    offsets = new Map();
    offsetsBySlot.set(timeZone, offsets);
  }
  let offset = offsets.get(slot);
  if (offset === undefined) {
    const parts: Record<string, number> = {};
    for (const part of wallClockFormat(timeZone).formatToParts(new Date(slot)))
      if (part.type !== "literal") parts[part.type] = Number(part.value);
    offset = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour % 24, parts.minute, parts.second) - slot;
    if (offsets.size >= MAX_CACHED_SLOTS) offsets.clear();
    offsets.set(slot, offset);
  }
  return timestamp + offset;
}

function localCalendar(policy: Pick<GfsPolicy, "timeZone" | "weekStart" | "dayStartHour">) {
  wallClockFormat(policy.timeZone);
  return {
    periodsOf(timestamp: number): Record<PeriodKind, number> {
      // The wall-clock time less the day start: its UTC date is the local "business" date. Working on wall-clock times is
      // what makes a 23- or 25-hour day one day.
      const businessDay = Math.floor((wallClockOf(policy.timeZone, timestamp) - policy.dayStartHour * HOUR_MS) / DAY_MS);
      return periodIndexes(businessDay, policy.weekStart);
    },
  };
}

/** The period indexes of a local date given as days since 1970-01-01 (a Thursday): consecutive periods differ by 1. */
function periodIndexes(dayIndex: number, weekStart: WeekStart): Record<PeriodKind, number> {
  const { year, month } = civilDate(dayIndex);
  return { day: dayIndex, week: Math.floor(weekFirstDay(dayIndex, weekStart) / 7), month: year * 12 + month - 1, year };
}

/** The first day of a date's week: 1970-01-01 was a Thursday (Monday + 3, Sunday + 4). */
function weekFirstDay(dayIndex: number, weekStart: WeekStart): number {
  return dayIndex - ((((dayIndex + (weekStart === "MONDAY" ? 3 : 4)) % 7) + 7) % 7);
}

/** What a person reads for a period given by its index. */
function periodName(kind: PeriodKind, index: number, weekStart: WeekStart): string {
  switch (kind) {
    case "day":
      return isoDate(index);
    case "week": {
      // index * 7 is a Thursday: the week's first day is the Monday after it, or the Sunday after it.
      const first = index * 7 + (weekStart === "MONDAY" ? 4 : 3);
      return weekStart === "MONDAY" ? isoWeekName(first) : `from Sunday ${isoDate(first)}`;
    }
    case "month":
      return `${Math.floor(index / 12)}-${pad((index % 12) + 1)}`;
    case "year":
      return String(index);
  }
}

/** Year and month (1-12) of a day counted from 1970-01-01, by integer arithmetic (H. Hinnant's civil_from_days). */
function civilDate(dayIndex: number): { year: number; month: number } {
  const z = dayIndex + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const shifted = Math.floor((5 * dayOfYear + 2) / 153);
  const month = shifted < 10 ? shifted + 3 : shifted - 9;
  return { year: yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month };
}

/** ISO 8601 week name (2026-W13) of the week starting on this Monday: its year is the year of its Thursday. */
function isoWeekName(mondayIndex: number): string {
  const thursday = new Date((mondayIndex + 3) * DAY_MS);
  const year = thursday.getUTCFullYear();
  const week = Math.floor((mondayIndex + 3 - Date.UTC(year, 0, 1) / DAY_MS) / 7) + 1;
  return `${year}-W${pad(week)}`;
}

function isoDate(dayIndex: number): string {
  return new Date(dayIndex * DAY_MS).toISOString().slice(0, 10);
}

function pad(value: number): string {
  return String(value).padStart(2, "0");
}

function removalReason(policy: GfsPolicy): string {
  const periods = [
    policy.days > 0 ? `${policy.days} day${policy.days > 1 ? "s" : ""}` : null,
    policy.weeks > 0 ? `${policy.weeks} week${policy.weeks > 1 ? "s" : ""}` : null,
    policy.months > 0 ? `${policy.months} month${policy.months > 1 ? "s" : ""}` : null,
    policy.years > 0 ? `${policy.years} year${policy.years > 1 ? "s" : ""}` : null,
  ].filter((text): text is string => text !== null);
  const newest = `not among the newest ${policy.keepLast}`;
  if (periods.length === 0) return newest;
  return `${newest}, and not the oldest backup of any of the last ${periods.join(", ")} (${policy.timeZone})`;
}
