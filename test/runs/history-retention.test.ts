/**
 * Retention of run history (HISTORY_RETENTION_DAYS): which runs a sweep deletes (ended, older than the retention, no restore
 * point referring to them, with their task trees) and which it keeps; batches; the timer on a manual clock; the server's
 * own sweep at start; the setting's validation. Real Postgres; time is given to the sweep, never waited for.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../server/config.js";
import type { RunStatus } from "../../server/db/generated/enums.js";
import { createPrismaClient, type Db } from "../../server/db/prisma.js";
import { createLogger } from "../../server/log.js";
import { HistoryRetention } from "../../server/runs/history-retention.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { eventually } from "../support/eventually.js";
import { manualClock } from "../support/manual-clock.js";

const DAY = 86_400_000;
const HOUR = 3_600_000;
const NOW = new Date("2026-06-15T12:00:00Z");
const silent = createLogger("silent");

let database: TestDatabase;
let db: Db;
let jobId: string;

beforeAll(async () => {
  database = await createTestDatabase();
  db = createPrismaClient(database.url);
  jobId = (
    await db.job.create({
      data: { name: "nightly", mode: "DELTA", selection: { vmUuids: [] }, srUuids: [], settings: {} },
    })
  ).id;
});

afterAll(async () => {
  await db?.$disconnect();
  await database?.drop();
});

/** A run created `ageDays` before `at`, with `tasks` tasks (a parent and its children). */
async function seedRun(name: string, ageDays: number, status: RunStatus, options: { tasks?: number; at?: Date } = {}) {
  const createdAt = new Date((options.at ?? NOW).getTime() - ageDays * DAY);
  const ended = !["PENDING", "RUNNING"].includes(status);
  const run = await db.run.create({
    data: {
      jobId,
      trigger: "SCHEDULE",
      status,
      createdAt,
      startedAt: status === "PENDING" ? null : createdAt,
      endedAt: ended ? new Date(createdAt.getTime() + HOUR) : null,
      error: name,
    },
  });
  const count = options.tasks ?? 3;
  if (count > 0) {
    const parent = await db.task.create({ data: { runId: run.id, position: 0, kind: "vm", name, status, startedAt: createdAt } });
    for (let i = 1; i < count; i++) {
      await db.task.create({
        data: {
          runId: run.id,
          parentId: parent.id,
          position: i,
          kind: "transfer",
          name: `${name} disk ${i}`,
          status,
          startedAt: createdAt,
        },
      });
    }
  }
  return run;
}

async function restorePointOf(runId: string, vm: string) {
  return db.restorePoint.create({
    data: { kind: "SNAPSHOT", vmUuid: vm, vmName: vm, timestamp: NOW, runId, jobId },
  });
}

/** The names (error column) of the runs left, oldest first, among those named with `prefix`. */
async function runsLeft(prefix: string): Promise<string[]> {
  const runs = await db.run.findMany({ where: { error: { startsWith: prefix } }, orderBy: { createdAt: "asc" } });
  return runs.map((run) => run.error!);
}

describe("history retention", () => {
  it("deletes ended runs older than the retention with their tasks; keeps recent, unfinished and referenced runs", async () => {
    const old = await seedRun("a-old-success", 400, "SUCCESS");
    await seedRun("a-old-failure", 366, "FAILURE");
    await seedRun("a-old-interrupted", 370, "INTERRUPTED");
    await seedRun("a-old-skipped", 380, "SKIPPED", { tasks: 0 });
    await seedRun("a-old-cancelled", 390, "CANCELLED");
    await seedRun("a-old-running", 500, "RUNNING");
    await seedRun("a-old-pending", 450, "PENDING");
    const referenced = await seedRun("a-old-referenced", 600, "SUCCESS");
    const point = await restorePointOf(referenced.id, "vm-a");
    await seedRun("a-recent", 364, "SUCCESS");
    await seedRun("a-today", 0, "FAILURE");
    const tasksBefore = await db.task.count();

    const retention = new HistoryRetention(db, silent, { retentionDays: 365 });
    expect(await retention.sweep(NOW)).toEqual({ runs: 5, tasks: 12 });
    expect(await runsLeft("a-")).toEqual(["a-old-referenced", "a-old-running", "a-old-pending", "a-recent", "a-today"]);
    expect(await db.task.count({ where: { runId: old.id } })).toBe(0);
    expect(await db.task.count()).toBe(tasksBefore - 12);
    // The restore point still says which run made it.
    expect((await db.restorePoint.findUniqueOrThrow({ where: { id: point.id } })).runId).toBe(referenced.id);

    // A second sweep at the same time finds nothing more.
    expect(await retention.sweep(NOW)).toEqual({ runs: 0, tasks: 0 });

    // Once the restore point is removed and the running run has ended, they go at the next sweep; time moved on too, so
    // the run that was 364 days old is now past the retention as well.
    await db.restorePoint.delete({ where: { id: point.id } });
    await db.run.updateMany({ where: { error: "a-old-running" }, data: { status: "INTERRUPTED", endedAt: NOW } });
    expect(await retention.sweep(new Date(NOW.getTime() + 2 * DAY))).toEqual({ runs: 3, tasks: 9 });
    expect(await runsLeft("a-")).toEqual(["a-old-pending", "a-today"]);
  });

  it("works in batches: a sweep takes every expired run, a batch at a time, oldest first", async () => {
    for (let i = 0; i < 7; i++) await seedRun(`b-${6 - i}`, 400 + 6 - i, "SUCCESS", { tasks: 2 });
    await seedRun("b-kept", 10, "SUCCESS");
    const retention = new HistoryRetention(db, silent, { retentionDays: 365, sweepBatch: 3 });
    // A signal that says "stop" when the sweep looks at it the second time, that is once its first batch is done.
    let looks = 0;
    const afterOneBatch = {
      get aborted() {
        return looks++ >= 1;
      },
    } as AbortSignal;
    expect(await retention.sweep(NOW, afterOneBatch)).toEqual({ runs: 3, tasks: 6 });
    expect(await runsLeft("b-")).toEqual(["b-3", "b-2", "b-1", "b-0", "b-kept"]);
    expect(await retention.sweep(NOW)).toEqual({ runs: 4, tasks: 8 });
    expect(await runsLeft("b-")).toEqual(["b-kept"]);
  });

  it("HISTORY_RETENTION_DAYS=0 keeps history forever: no sweep, no timer", async () => {
    await seedRun("c-ancient", 5000, "SUCCESS");
    const clock = manualClock(NOW);
    const retention = new HistoryRetention(db, silent, { retentionDays: 0, clock });
    expect(await retention.sweep(NOW)).toEqual({ runs: 0, tasks: 0 });
    const sweeping = retention.start();
    expect(clock.pending()).toEqual([]);
    await sweeping.stop();
    expect(await runsLeft("c-")).toEqual(["c-ancient"]);
  });

  it("sweeps at start and then on its timer until stopped (a manual clock, no waiting)", async () => {
    const clock = manualClock(NOW);
    // 30 days minus 3 hours old: kept at start, past the retention at the sweep 6 hours later.
    const run = await seedRun("d-almost", 30 - 3 / 24, "SUCCESS");
    const retention = new HistoryRetention(db, silent, { retentionDays: 30, clock, sweepIntervalMs: 6 * HOUR });
    const sweeping = retention.start();
    try {
      await clock.advance(0);
      expect(await db.run.count({ where: { id: run.id } })).toBe(1);
      expect(clock.pending()).toEqual([NOW.getTime() + 6 * HOUR]);
      await clock.advance(6 * HOUR);
      expect(await db.run.count({ where: { id: run.id } })).toBe(0);
      expect(await db.task.count({ where: { runId: run.id } })).toBe(0);
    } finally {
      await sweeping.stop();
    }
    expect(clock.pending()).toEqual([]);
  });
});

describe("history retention in the server", () => {
  let server: TestCairn | undefined;
  let own: TestDatabase | undefined;
  let ownDb: Db | undefined;

  afterAll(async () => {
    await server?.stop();
    await ownDb?.$disconnect();
    await own?.drop();
  });

  it("sweeps at start with HISTORY_RETENTION_DAYS from the environment", async () => {
    // A database with history in it before the server starts: its first sweep runs at start.
    own = await createTestDatabase();
    ownDb = createPrismaClient(own.url);
    const now = new Date();
    const make = (name: string, ageDays: number) =>
      ownDb!.run.create({
        data: {
          trigger: "MANUAL",
          status: "SUCCESS",
          createdAt: new Date(now.getTime() - ageDays * DAY),
          endedAt: new Date(now.getTime() - ageDays * DAY + HOUR),
          error: name,
          // Already reported: the server's report dispatcher has nothing to do with these.
          reportedAt: new Date(now.getTime() - ageDays * DAY + HOUR),
        },
      });
    const old = await make("e-old", 40);
    const recent = await make("e-recent", 20);
    server = await startTestCairn({ env: { DATABASE_URL: own.url, HISTORY_RETENTION_DAYS: "30" } });
    await eventually("the old run to be deleted by the start-up sweep", async () => {
      expect(await ownDb!.run.count({ where: { id: old.id } })).toBe(0);
    });
    expect(await ownDb.run.count({ where: { id: recent.id } })).toBe(1);
  });
});

describe("HISTORY_RETENTION_DAYS", () => {
  it("defaults to 365 days, 0 keeps forever, and anything else is refused naming the variable", () => {
    expect(loadConfig({}, "/srv/cairn").historyRetentionDays).toBe(365);
    expect(loadConfig({ HISTORY_RETENTION_DAYS: "90" }, "/srv/cairn").historyRetentionDays).toBe(90);
    expect(loadConfig({ HISTORY_RETENTION_DAYS: "0" }, "/srv/cairn").historyRetentionDays).toBe(0);
    for (const bad of ["-1", "1.5", "a year", "36501"]) {
      expect(() => loadConfig({ HISTORY_RETENTION_DAYS: bad }, "/srv/cairn")).toThrow(
        /HISTORY_RETENTION_DAYS=.*expected a whole number from 0 to 36500/,
      );
    }
  });
});
