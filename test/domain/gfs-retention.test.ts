/**
 * GFS retention, pure: a simulated clock steps over two years (across every DST change of the zone) and at each step a new
 * backup is taken and the decision applied, as runs do. The expected kept set is worked out here independently, by brute
 * force: a day is the span from the first instant whose local wall clock (read with Intl, at quarter-hour steps) reaches the
 * day start to the next one; weeks, months and years are made of those days.
 */
import { describe, expect, it } from "vitest";
import { type GfsPolicy, decideRetention, periodsOf } from "../../server/domain/gfs-retention.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** The brute-force calendar of one zone and day start. */
function bruteCalendar(timeZone: string, dayStartHour: number, weekStart: "MONDAY" | "SUNDAY") {
  const wall = new Intl.DateTimeFormat("sv-SE", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
  const starts = new Map<string, number>();
  /** The first quarter-hour instant whose local wall clock reads `date` at dayStartHour or later. */
  const dayStart = (date: string): number => {
    let start = starts.get(date);
    if (start === undefined) {
      const target = `${date} ${String(dayStartHour).padStart(2, "0")}:00:00`;
      start = Date.parse(`${date}T00:00:00Z`) + dayStartHour * HOUR - 16 * HOUR;
      while (wall.format(start) < target) start += 15 * 60_000;
      starts.set(date, start);
    }
    return start;
  };
  const addDays = (date: string, days: number) => new Date(Date.parse(`${date}T00:00:00Z`) + days * DAY).toISOString().slice(0, 10);
  const days = new Map<number, string>();
  const dayOf = (instant: number): string => {
    const known = days.get(instant);
    if (known) return known;
    for (let shift = -2; shift <= 2; shift++) {
      const date = addDays(new Date(instant).toISOString().slice(0, 10), shift);
      if (dayStart(date) <= instant && instant < dayStart(addDays(date, 1))) {
        days.set(instant, date);
        return date;
      }
    }
    throw new Error(`no day holds ${new Date(instant).toISOString()}`);
  };
  const weeks = new Map<string, string>();
  const weekOf = (date: string): string => {
    let week = weeks.get(date);
    if (week === undefined) {
      const weekday = new Date(`${date}T00:00:00Z`).getUTCDay();
      week = addDays(date, -(weekStart === "MONDAY" ? (weekday + 6) % 7 : weekday));
      weeks.set(date, week);
    }
    return week;
  };
  return { dayOf, weekOf, addDays };
}

/** The ids the policy keeps among `backups` at `now`, by brute force. */
function expectedKept(backups: number[], policy: GfsPolicy, now: number, calendar: ReturnType<typeof bruteCalendar>): Set<number> {
  const kept = new Set<number>([...backups].sort((a, b) => b - a).slice(0, policy.keepLast));
  const today = calendar.dayOf(now);
  const keys = {
    day: (date: string) => date,
    week: (date: string) => calendar.weekOf(date),
    month: (date: string) => date.slice(0, 7),
    year: (date: string) => date.slice(0, 4),
  };
  const lastPeriods = {
    day: Array.from({ length: policy.days }, (_, i) => calendar.addDays(today, -i)),
    week: Array.from({ length: policy.weeks }, (_, i) => calendar.addDays(calendar.weekOf(today), -7 * i)),
    month: Array.from({ length: policy.months }, (_, i) => {
      const month = Number(today.slice(0, 4)) * 12 + Number(today.slice(5, 7)) - 1 - i;
      return `${Math.floor(month / 12)}-${String((month % 12) + 1).padStart(2, "0")}`;
    }),
    year: Array.from({ length: policy.years }, (_, i) => String(Number(today.slice(0, 4)) - i)),
  };
  for (const kind of ["day", "week", "month", "year"] as const) {
    const oldestByPeriod = new Map<string, number>();
    for (const backup of backups) {
      const period = keys[kind](calendar.dayOf(backup));
      oldestByPeriod.set(period, Math.min(backup, oldestByPeriod.get(period) ?? backup));
    }
    for (const period of lastPeriods[kind]) {
      const oldest = oldestByPeriod.get(period);
      if (oldest !== undefined) kept.add(oldest);
    }
  }
  return kept;
}

/**
 * Steps the clock from `start` by `stepMs` until `end`: at each step a backup is taken, the module decides, the decision
 * must equal the brute-force one, and what it removes goes. Returns the backups left at the end.
 */
function simulate(policy: GfsPolicy, start: number, end: number, stepMs: number): number[] {
  const calendar = bruteCalendar(policy.timeZone, policy.dayStartHour, policy.weekStart);
  let backups: number[] = [];
  let steps = 0;
  for (let now = start; now < end; now += stepMs, steps++) {
    backups.push(now);
    const decisions = decideRetention(
      backups.map((backup) => ({ id: String(backup), timestamp: backup })),
      policy,
      now,
    );
    const kept = decisions.filter((decision) => decision.keep).map((decision) => Number(decision.id));
    const expected = [...expectedKept(backups, policy, now, calendar)].sort((a, b) => a - b);
    if (JSON.stringify(kept) !== JSON.stringify(expected)) {
      const iso = (list: number[]) => list.map((t) => new Date(t).toISOString());
      expect({ at: new Date(now).toISOString(), kept: iso(kept) }).toEqual({ at: new Date(now).toISOString(), kept: iso(expected) });
    }
    const unexplained = decisions.filter((decision) => decision.reasons.length === 0);
    if (unexplained.length > 0) expect(unexplained).toEqual([]);
    backups = kept;
  }
  expect(steps).toBeGreaterThan(0);
  return backups;
}

const TWO_YEARS = { start: Date.UTC(2025, 0, 1, 0, 30), end: Date.UTC(2027, 0, 1) };

describe("GFS retention over two years of a simulated clock", () => {
  it("Europe/Paris, a backup every 5 hours (every hour of the day in turn), ISO weeks, days from midnight: matches brute force", () => {
    const policy: GfsPolicy = {
      keepLast: 3,
      days: 7,
      weeks: 5,
      months: 13,
      years: 3,
      timeZone: "Europe/Paris",
      weekStart: "MONDAY",
      dayStartHour: 0,
    };
    // Ends on 31 December at noon: the last 13 months are December 2025 to December 2026.
    const left = simulate(policy, TWO_YEARS.start, Date.UTC(2026, 11, 31, 12), 5 * HOUR);
    const calendar = bruteCalendar("Europe/Paris", 0, "MONDAY");
    // The first backup of each of the last 13 months survived all along (the oldest of its month at every step since).
    for (let i = 0; i < 13; i++) {
      const month = new Date(Date.UTC(2026, 11 - i, 1)).toISOString().slice(0, 7);
      let first = TWO_YEARS.start;
      while (calendar.dayOf(first).slice(0, 7) < month) first += 5 * HOUR;
      expect(left, month).toContain(first);
    }
    expect(left.length).toBeLessThanOrEqual(3 + 7 + 5 + 13 + 3);
  });

  it("America/New_York, a backup every 7 hours, Sunday weeks, days from 02:00 (the DST hour): matches brute force", () => {
    simulate(
      { keepLast: 2, days: 10, weeks: 6, months: 8, years: 2, timeZone: "America/New_York", weekStart: "SUNDAY", dayStartHour: 2 },
      TWO_YEARS.start,
      TWO_YEARS.end,
      7 * HOUR,
    );
  });

  it("America/New_York, daily backups at a fixed UTC time that moves across local midnight with DST: matches brute force", () => {
    // 04:30 UTC is 23:30 the day before in winter (EST) and 00:30 in summer (EDT).
    simulate(
      { keepLast: 1, days: 14, weeks: 8, months: 6, years: 2, timeZone: "America/New_York", weekStart: "MONDAY", dayStartHour: 0 },
      Date.UTC(2025, 0, 1, 4, 30),
      TWO_YEARS.end,
      DAY,
    );
  });

  it("Europe/Paris, hourly backups through both DST changes of 2026, Sunday weeks, days from 03:00: matches brute force", () => {
    simulate(
      { keepLast: 0, days: 3, weeks: 3, months: 2, years: 1, timeZone: "Europe/Paris", weekStart: "SUNDAY", dayStartHour: 3 },
      Date.UTC(2026, 2, 1),
      Date.UTC(2026, 10, 15),
      HOUR,
    );
  });
});

describe("GFS calendar", () => {
  const paris = { timeZone: "Europe/Paris", weekStart: "MONDAY", dayStartHour: 0 } as const;

  it("counts the 23-hour and the 25-hour days of DST changes as one day each", () => {
    // 2026-03-29 in Paris: 00:00 CET = 23:00 UTC the day before, to 00:00 CEST = 22:00 UTC: 23 hours.
    const spring = Array.from({ length: 23 }, (_, i) => Date.UTC(2026, 2, 28, 23) + i * HOUR);
    expect(new Set(spring.map((t) => periodsOf(t, paris).day.name))).toEqual(new Set(["2026-03-29"]));
    expect(periodsOf(Date.UTC(2026, 2, 29, 22), paris).day.name).toBe("2026-03-30");
    // 2026-10-25: 00:00 CEST = 22:00 UTC the day before, to 00:00 CET = 23:00 UTC: 25 hours.
    const autumn = Array.from({ length: 25 }, (_, i) => Date.UTC(2026, 9, 24, 22) + i * HOUR);
    expect(new Set(autumn.map((t) => periodsOf(t, paris).day.name))).toEqual(new Set(["2026-10-25"]));
    expect(periodsOf(Date.UTC(2026, 9, 25, 23), paris).day.name).toBe("2026-10-26");
    expect(periodsOf(Date.UTC(2026, 9, 25, 23), paris).day.index - periodsOf(Date.UTC(2026, 2, 28, 23), paris).day.index).toBe(211);
  });

  it("starts a day at dayStartHour, and when the clocks jump over it, where they land", () => {
    const ny = { timeZone: "America/New_York", weekStart: "MONDAY", dayStartHour: 2 } as const;
    // 2026-03-08: 01:59:59 EST is followed by 03:00 EDT (07:00 UTC).
    expect(periodsOf(Date.UTC(2026, 2, 8, 6, 59), ny).day.name).toBe("2026-03-07");
    expect(periodsOf(Date.UTC(2026, 2, 8, 7, 0), ny).day.name).toBe("2026-03-08");
    // 2026-11-01: 01:00-01:59 happens twice (EDT then EST); the day starts at 02:00 EST (07:00 UTC).
    expect(periodsOf(Date.UTC(2026, 10, 1, 6, 30), ny).day.name).toBe("2026-10-31");
    expect(periodsOf(Date.UTC(2026, 10, 1, 7, 0), ny).day.name).toBe("2026-11-01");
  });

  it("names ISO weeks, Sunday weeks, months and years", () => {
    const at = Date.UTC(2026, 2, 29, 12); // Sunday 2026-03-29
    expect(periodsOf(at, paris).week.name).toBe("2026-W13");
    expect(periodsOf(at, { ...paris, weekStart: "SUNDAY" }).week.name).toBe("from Sunday 2026-03-29");
    expect(periodsOf(Date.UTC(2027, 0, 1, 12), paris).week.name).toBe("2026-W53");
    expect(periodsOf(Date.UTC(2024, 11, 30, 12), paris).week.name).toBe("2025-W01");
    expect(periodsOf(at, paris).month.name).toBe("2026-03");
    expect(periodsOf(at, paris).year.name).toBe("2026");
  });
});

describe("decideRetention", () => {
  const policy: GfsPolicy = {
    keepLast: 2,
    days: 2,
    weeks: 1,
    months: 1,
    years: 1,
    timeZone: "Europe/Paris",
    weekStart: "MONDAY",
    dayStartHour: 0,
  };

  it("says each reason a point is kept, and why one is removed", () => {
    const backups = [
      { id: "a", timestamp: Date.UTC(2026, 2, 1, 10) },
      { id: "b", timestamp: Date.UTC(2026, 2, 23, 10) },
      { id: "c", timestamp: Date.UTC(2026, 2, 25, 10) },
      { id: "d", timestamp: Date.UTC(2026, 2, 28, 10) },
      { id: "e", timestamp: Date.UTC(2026, 2, 28, 12) },
      { id: "f", timestamp: Date.UTC(2026, 2, 29, 10) },
    ];
    const decisions = Object.fromEntries(decideRetention(backups, policy, Date.UTC(2026, 2, 29, 11)).map((d) => [d.id, d]));
    expect(decisions.a.reasons).toEqual(["oldest of month 2026-03", "oldest of year 2026"]);
    expect(decisions.b.reasons).toEqual(["oldest of week 2026-W13"]);
    expect(decisions.c.keep).toBe(false);
    expect(decisions.c.reasons).toEqual([
      "not among the newest 2, and not the oldest backup of any of the last 2 days, 1 week, 1 month, 1 year (Europe/Paris)",
    ]);
    expect(decisions.d.reasons).toEqual(["oldest of day 2026-03-28"]);
    expect(decisions.e.reasons).toEqual(["newest 2"]);
    expect(decisions.f.reasons).toEqual(["newest 2", "oldest of day 2026-03-29"]);
  });

  it("refuses a time zone that does not exist and counts below 0", () => {
    expect(() => decideRetention([], { ...policy, timeZone: "Mars/Olympus" }, 0)).toThrow(RangeError);
    expect(() => decideRetention([], { ...policy, weeks: -1 }, 0)).toThrow(/weeks must be a whole number/);
    expect(() => decideRetention([], { ...policy, dayStartHour: 24 }, 0)).toThrow(/dayStartHour/);
  });
});
