/**
 * The rollups of Run kept by triggers (migration run_rollups): RunSlotStats (backupStats by day and week) and RunCount (the runs
 * page's totalCount). Each is compared with the answer read from every run (the query backupStats used before the rollup, and
 * count(*)), after inserts, status changes of running runs, a job's deletion, retention's deletes, concurrent writers of one
 * slot and a TRUNCATE; in time zones whose offsets are half and quarter hours, and ranges that do not start on a slot.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunStatus } from "../../server/db/generated/enums.js";
import { createPrismaClient, type Db } from "../../server/db/prisma.js";
import { backupStatsSql } from "../../server/db/stats.sql.js";
import { createLogger } from "../../server/log.js";
import { HistoryRetention } from "../../server/runs/history-retention.js";
import { RunService } from "../../server/services/run-service.js";
import type { EventBus } from "../../server/events/event-bus.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { manualClock } from "../support/manual-clock.js";

const MINUTE = 60_000;
const DAY = 86_400_000;
const NOW = new Date("2026-06-15T12:00:00Z");
// Half and quarter hour offsets (Kolkata, Kathmandu, St John's, Eucla), a half-hour DST shift (Lord Howe), a zone whose DST
// ends at midnight back into the previous day (Santiago), and DST changes in March and April 2026 (the second seeded window).
const ZONES = [
  "UTC",
  "Europe/Paris",
  "America/New_York",
  "Asia/Kolkata",
  "Asia/Kathmandu",
  "America/St_Johns",
  "Australia/Eucla",
  "Australia/Lord_Howe",
  "America/Santiago",
];
const DST_WINDOW_END = new Date("2026-04-10T00:00:00Z");
const STATUSES: RunStatus[] = ["SUCCESS", "FAILURE", "INTERRUPTED", "CANCELLED", "SKIPPED", "RUNNING", "PENDING"];

let database: TestDatabase;
let db: Db;
let others: Db[] = [];
const jobIds: string[] = [];

/** Deterministic pseudo-random numbers, so that a failure can be replayed. */
function random(seed: number) {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

/** backupStats by day or week as it was computed before the rollup: from every run of the range. */
function fromEveryRun(from: Date, to: Date, groupBy: "DAY" | "WEEK", zone: string) {
  const at = `((r."createdAt" AT TIME ZONE 'UTC') AT TIME ZONE $3)`;
  const key = groupBy === "DAY" ? `to_char(date_trunc('day', ${at}), 'YYYY-MM-DD')` : `to_char(date_trunc('week', ${at}), 'IYYY-"W"IW')`;
  return db.$queryRawUnsafe<unknown[]>(
    `SELECT ${key} AS key, ${key} AS label, count(*) AS runs,
            count(*) FILTER (WHERE r.status = 'SUCCESS') AS succeeded,
            count(*) FILTER (WHERE r.status IN ('FAILURE', 'INTERRUPTED')) AS failed,
            coalesce(sum(r."transferredBytes"), 0)::bigint AS bytes,
            coalesce(sum(extract(epoch FROM r."endedAt" - r."startedAt")), 0)::float8 AS duration_seconds,
            avg(extract(epoch FROM r."endedAt" - r."startedAt"))::float8 AS avg_duration_seconds,
            max(extract(epoch FROM r."endedAt" - r."startedAt"))::float8 AS max_duration_seconds
     FROM "Run" r
     WHERE r.kind = 'BACKUP' AND r."createdAt" >= ($1::timestamptz AT TIME ZONE 'UTC') AND r."createdAt" < ($2::timestamptz AT TIME ZONE 'UTC')
     GROUP BY 1, 2 ORDER BY 2, 1`,
    from.toISOString(),
    to.toISOString(),
    zone,
  );
}

async function expectStatsExact(ranges: [Date, Date][] = defaultRanges()) {
  for (const [from, to] of ranges) {
    for (const zone of ZONES) {
      for (const groupBy of ["DAY", "WEEK"] as const) {
        const rolled = await db.$queryRaw(backupStatsSql(from, to, groupBy, zone));
        expect(rolled, `${groupBy} in ${zone} over ${from.toISOString()}..${to.toISOString()}`).toEqual(
          await fromEveryRun(from, to, groupBy, zone),
        );
      }
    }
  }
}

function defaultRanges(): [Date, Date][] {
  return [
    [new Date(NOW.getTime() - 40 * DAY), new Date(NOW.getTime() + DAY)],
    [new Date(DST_WINDOW_END.getTime() - 41 * DAY), DST_WINDOW_END],
    // Not on slots: the edges are read from the runs.
    [new Date(NOW.getTime() - 20 * DAY + 7 * MINUTE + 123), new Date(NOW.getTime() - 2 * DAY - 4 * MINUTE - 7)],
    // Within one slot.
    [new Date(NOW.getTime() - 3 * DAY + 2 * MINUTE), new Date(NOW.getTime() - 3 * DAY + 9 * MINUTE)],
  ];
}

async function expectCountsExact() {
  const runs = new RunService(db, {} as EventBus);
  const filters = [
    {},
    { status: ["FAILURE", "INTERRUPTED"] as RunStatus[] },
    { jobId: jobIds[0] },
    { jobId: jobIds[1], status: ["RUNNING"] as RunStatus[] },
  ];
  for (const filter of filters) {
    const where = await runs.where(filter);
    expect(await (await runs.list(filter, { first: 1 })).totalCount, JSON.stringify(filter)).toBe(await db.run.count({ where }));
  }
  const byKey = await db.$queryRaw<{ job: string; status: string; runs: bigint }[]>`
    SELECT coalesce("jobId"::text, 'nil') AS job, status::text, count(*) AS runs FROM "Run" GROUP BY 1, 2 ORDER BY 1, 2`;
  const counted = await db.$queryRaw<{ job: string; status: string; runs: bigint }[]>`
    SELECT CASE WHEN "jobId" = '00000000-0000-0000-0000-000000000000' THEN 'nil' ELSE "jobId"::text END AS job, status::text, runs
    FROM "RunCount" WHERE runs <> 0 ORDER BY 1, 2`;
  expect(counted).toEqual(byKey);
}

/** `count` runs over the 40 days before NOW, of every status, some without a start or an end, some not backups. */
async function seedRuns(count: number, seed: number, end: Date = NOW) {
  const next = random(seed);
  const data = Array.from({ length: count }, () => {
    const status = STATUSES[Math.floor(next() * STATUSES.length)];
    // Minutes and milliseconds anywhere, so that runs fall on every side of slot and bucket boundaries.
    const createdAt = new Date(end.getTime() - Math.floor(next() * 40 * DAY));
    const started = status !== "PENDING" && !(status === "CANCELLED" && next() < 0.5);
    const ended = !["PENDING", "RUNNING"].includes(status);
    const startedAt = started ? new Date(createdAt.getTime() + Math.floor(next() * 90_000)) : null;
    return {
      jobId: next() < 0.1 ? null : jobIds[Math.floor(next() * jobIds.length)],
      kind: next() < 0.1 ? ("HEALTH_CHECK" as const) : ("BACKUP" as const),
      trigger: "SCHEDULE" as const,
      status,
      createdAt,
      startedAt,
      endedAt: ended ? new Date((startedAt ?? createdAt).getTime() + Math.floor(next() * 4 * 3_600_000) + 1) : null,
      transferredBytes: BigInt(Math.floor(next() * 1e12)),
    };
  });
  await db.run.createMany({ data });
}

beforeAll(async () => {
  database = await createTestDatabase();
  db = createPrismaClient(database.url);
  for (const name of ["nightly", "hourly", "weekly"]) {
    jobIds.push((await db.job.create({ data: { name, mode: "DELTA", selection: { vmUuids: [] }, srUuids: [], settings: {} } })).id);
  }
  await seedRuns(1500, 14);
  await seedRuns(1500, 15, DST_WINDOW_END);
});

afterAll(async () => {
  await Promise.all(others.map((other) => other.$disconnect()));
  await db?.$disconnect();
  await database?.drop();
});

describe("the rollups of run history", () => {
  it("give backupStats by day and week exactly as every run does, in zones with half and quarter hour offsets", async () => {
    await expectStatsExact();
    await expectCountsExact();
  });

  it("read the runs of slots that a day boundary cuts (Liberia's -0:44:30 until 1972)", async () => {
    const end = new Date("1971-06-01T00:00:00Z");
    await seedRuns(400, 71, end);
    const from = new Date(end.getTime() - 41 * DAY);
    for (const groupBy of ["DAY", "WEEK"] as const) {
      const rolled = await db.$queryRaw<unknown[]>(backupStatsSql(from, end, groupBy, "Africa/Monrovia"));
      expect(rolled.length).toBeGreaterThan(groupBy === "DAY" ? 30 : 4);
      expect(rolled).toEqual(await fromEveryRun(from, end, groupBy, "Africa/Monrovia"));
    }
  });

  it("follow running runs that end, change size, and runs added one by one", async () => {
    const running = await db.run.findMany({ where: { status: "RUNNING", kind: "BACKUP" }, take: 20 });
    expect(running.length).toBeGreaterThan(5);
    for (const [i, run] of running.entries()) {
      if (i % 3 === 0) await db.run.update({ where: { id: run.id }, data: { transferredBytes: { increment: 1234n } } });
      else {
        await db.run.update({
          where: { id: run.id },
          data: { status: i % 2 ? "SUCCESS" : "FAILURE", endedAt: new Date(run.createdAt.getTime() + (i + 1) * 61_001) },
        });
      }
    }
    await db.run.create({ data: { jobId: jobIds[0], trigger: "MANUAL", status: "RUNNING", createdAt: NOW, startedAt: NOW } });
    await db.run.updateMany({ where: { status: "PENDING", kind: "BACKUP" }, data: { status: "CANCELLED", endedAt: NOW } });
    await expectStatsExact();
    await expectCountsExact();
  });

  it("stay exact when concurrent transactions write runs of the same slot", async () => {
    others = Array.from({ length: 4 }, () => createPrismaClient(database.url));
    const slot = new Date("2026-06-14T10:15:00Z");
    const created = await Promise.all(
      others.map((other, i) =>
        other.$transaction(async (tx) => {
          const run = await tx.run.create({
            data: {
              jobId: jobIds[i % 3],
              trigger: "MANUAL",
              status: "RUNNING",
              createdAt: new Date(slot.getTime() + i * 1000),
              startedAt: slot,
            },
          });
          await tx.run.update({
            where: { id: run.id },
            data: { status: "SUCCESS", endedAt: new Date(slot.getTime() + (i + 1) * 3_600_000) },
          });
          return run.id;
        }),
      ),
    );
    // Two of them deleted at once, while the other two add a run each to the same slot.
    await Promise.all([
      others[0].run.delete({ where: { id: created[0] } }),
      others[1].run.delete({ where: { id: created[1] } }),
      others[2].run.create({
        data: { jobId: jobIds[0], trigger: "API", status: "SUCCESS", createdAt: slot, startedAt: slot, endedAt: NOW },
      }),
      others[3].run.create({ data: { jobId: null, trigger: "API", status: "FAILURE", createdAt: slot, startedAt: slot, endedAt: slot } }),
    ]);
    await expectStatsExact([[new Date("2026-06-13T00:00:00Z"), new Date("2026-06-16T00:00:00Z")]]);
    await expectCountsExact();
  });

  it("lose the runs that retention deletes and those of a deleted job", async () => {
    const retention = new HistoryRetention(db, createLogger("silent"), { retentionDays: 25, sweepBatch: 100, clock: manualClock(NOW) });
    expect((await retention.sweep()).runs).toBeGreaterThan(100);
    expect(await db.run.count({ where: { createdAt: { lt: new Date(NOW.getTime() - 26 * DAY) }, status: "SUCCESS" } })).toBe(0);
    await db.job.delete({ where: { id: jobIds.pop() } });
    await expectStatsExact();
    await expectCountsExact();
  });

  it("are emptied with the runs by TRUNCATE and rebuilt exactly", async () => {
    await db.$executeRawUnsafe(`TRUNCATE "Run" CASCADE`);
    expect(await db.runSlotStats.count()).toBe(0);
    await seedRuns(300, 41);
    await db.$executeRawUnsafe(`SELECT "run_rollups_rebuild"()`);
    await expectStatsExact();
    await expectCountsExact();
  });
});
