/**
 * backupStats against figures computed by hand: runs seeded straight into Postgres (known times, sizes and outcomes),
 * then every grouping read through the API. A figure nobody checks is how `groupBy: VM` answered nothing for months.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient } from "../../server/db/prisma.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";

const VM1 = "11111111-1111-4111-8111-111111111111";
const VM2 = "22222222-2222-4222-8222-222222222222";

interface SeededTask {
  kind: string;
  vmUuid?: string;
  status: "SUCCESS" | "FAILURE" | "INTERRUPTED";
  sizeBytes?: number;
  seconds: number;
}

interface SeededRun {
  job?: "nightly" | "weekly";
  kind?: "BACKUP" | "RESTORE";
  createdAt: string;
  status: "SUCCESS" | "FAILURE" | "INTERRUPTED";
  seconds: number;
  bytes: number;
  tasks: SeededTask[];
}

// The history, by hand: each figure below adds these up.
const RUNS: SeededRun[] = [
  {
    job: "nightly",
    createdAt: "2026-11-02T10:00:00Z",
    status: "SUCCESS",
    seconds: 100,
    bytes: 1000,
    tasks: [
      { kind: "vm", vmUuid: VM1, status: "SUCCESS", sizeBytes: 600, seconds: 60 },
      // A VM's disk task carries the VM too: it must not count as a second VM backup.
      { kind: "disk", vmUuid: VM1, status: "SUCCESS", sizeBytes: 600, seconds: 55 },
      { kind: "vm", vmUuid: VM2, status: "SUCCESS", sizeBytes: 400, seconds: 40 },
    ],
  },
  {
    job: "nightly",
    createdAt: "2026-11-03T23:30:00Z",
    status: "FAILURE",
    seconds: 50,
    bytes: 0,
    tasks: [{ kind: "vm", vmUuid: VM1, status: "FAILURE", seconds: 50 }],
  },
  {
    job: "weekly",
    createdAt: "2026-11-03T01:00:00Z",
    status: "INTERRUPTED",
    seconds: 10,
    bytes: 10,
    tasks: [{ kind: "vm", vmUuid: VM2, status: "INTERRUPTED", sizeBytes: 10, seconds: 10 }],
  },
  // A restore is not a backup.
  {
    kind: "RESTORE",
    createdAt: "2026-11-03T12:00:00Z",
    status: "SUCCESS",
    seconds: 30,
    bytes: 700,
    tasks: [{ kind: "vm", vmUuid: VM1, status: "SUCCESS", sizeBytes: 700, seconds: 30 }],
  },
  // Before the range.
  {
    job: "nightly",
    createdAt: "2026-10-01T10:00:00Z",
    status: "SUCCESS",
    seconds: 100,
    bytes: 999,
    tasks: [{ kind: "vm", vmUuid: VM1, status: "SUCCESS", sizeBytes: 999, seconds: 100 }],
  },
  // A job deleted since: its runs stay in the history.
  {
    createdAt: "2026-11-09T08:00:00Z",
    status: "SUCCESS",
    seconds: 20,
    bytes: 5,
    tasks: [{ kind: "vm", vmUuid: VM1, status: "SUCCESS", sizeBytes: 5, seconds: 20 }],
  },
];

const RANGE = { from: "2026-11-01T00:00:00Z", to: "2026-12-01T00:00:00Z" };

describe("backupStats", () => {
  let server: TestCairn;
  let token: string;

  beforeAll(async () => {
    server = await startTestCairn();
    token = await server.login();
    const db = createPrismaClient(server.database.url);
    try {
      const pool = await db.pool.create({ data: { name: "history pool", url: "http://192.0.2.1", username: "root", passwordSealed: "x" } });
      await db.vmInventory.createMany({
        data: [
          { uuid: VM1, poolId: pool.id, name: "web", tags: [], powerState: "Running" },
          { uuid: VM2, poolId: pool.id, name: "db", tags: [], powerState: "Running" },
        ],
      });
      const jobs: Record<string, string> = {};
      for (const name of ["nightly", "weekly"]) {
        jobs[name] = (
          await db.job.create({ data: { name, mode: "FULL", selection: { vmUuids: [VM1, VM2] }, srUuids: [], settings: {} } })
        ).id;
      }
      for (const run of RUNS) {
        const createdAt = new Date(run.createdAt);
        const created = await db.run.create({
          data: {
            kind: run.kind ?? "BACKUP",
            jobId: run.job ? jobs[run.job] : null,
            trigger: "MANUAL",
            status: run.status,
            createdAt,
            startedAt: createdAt,
            endedAt: new Date(createdAt.getTime() + run.seconds * 1000),
            transferredBytes: BigInt(run.bytes),
          },
        });
        await db.task.createMany({
          data: run.tasks.map((task, position) => ({
            runId: created.id,
            position,
            kind: task.kind,
            name: task.kind,
            status: task.status,
            vmUuid: task.vmUuid ?? null,
            sizeBytes: task.sizeBytes === undefined ? null : BigInt(task.sizeBytes),
            startedAt: createdAt,
            endedAt: new Date(createdAt.getTime() + task.seconds * 1000),
          })),
        });
      }
      // A job deleted later: its runs stay in the history, under "deleted job".
      await db.job.delete({ where: { id: jobs.weekly } });
    } finally {
      await db.$disconnect();
    }
  }, 120_000);
  afterAll(() => stopAll(() => server?.stop()));

  const stats = async (groupBy: string) => {
    const { data, errors } = await server.graphql<{ backupStats: unknown[] }>(
      "query($from: DateTime!, $to: DateTime!, $g: StatsGroupBy!) { backupStats(from: $from, to: $to, groupBy: $g) { key label runs succeeded failed bytes durationSeconds } }",
      { ...RANGE, g: groupBy },
      token,
    );
    expect(errors).toBeUndefined();
    return data!.backupStats;
  };

  it("counts backup runs per UTC day", async () => {
    expect(await stats("DAY")).toEqual([
      { key: "2026-11-02", label: "2026-11-02", runs: 1, succeeded: 1, failed: 0, bytes: 1000, durationSeconds: 100 },
      { key: "2026-11-03", label: "2026-11-03", runs: 2, succeeded: 0, failed: 2, bytes: 10, durationSeconds: 60 },
      { key: "2026-11-09", label: "2026-11-09", runs: 1, succeeded: 1, failed: 0, bytes: 5, durationSeconds: 20 },
    ]);
  });

  it("counts backup runs per ISO week", async () => {
    expect(await stats("WEEK")).toEqual([
      { key: "2026-W45", label: "2026-W45", runs: 3, succeeded: 1, failed: 2, bytes: 1010, durationSeconds: 160 },
      { key: "2026-W46", label: "2026-W46", runs: 1, succeeded: 1, failed: 0, bytes: 5, durationSeconds: 20 },
    ]);
  });

  it("counts backup runs per job, a deleted job's runs included", async () => {
    const byJob = (await stats("JOB")) as { label: string }[];
    expect(byJob.map(({ key: _key, ...rest }: any) => rest).sort((a, b) => a.label.localeCompare(b.label))).toEqual([
      { label: "deleted job", runs: 2, succeeded: 1, failed: 1, bytes: 15, durationSeconds: 30 },
      { label: "nightly", runs: 2, succeeded: 1, failed: 1, bytes: 1000, durationSeconds: 150 },
    ]);
  });

  it("counts each VM's backups from its VM tasks, named by the inventory", async () => {
    expect(await stats("VM")).toEqual([
      { key: VM2, label: "db", runs: 2, succeeded: 1, failed: 1, bytes: 410, durationSeconds: 50 },
      { key: VM1, label: "web", runs: 3, succeeded: 2, failed: 1, bytes: 605, durationSeconds: 130 },
    ]);
  });
});
