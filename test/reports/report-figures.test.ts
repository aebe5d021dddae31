/**
 * Every figure of backupStats (each groupBy, in UTC and in Europe/Paris across both 2026 DST changes) and of vmProtection,
 * against numbers worked out by hand from the history seeded below (literal values, never recomputed with the same SQL).
 *
 * Europe/Paris in 2026: CEST (UTC+2) until Sunday 25 October 01:00 UTC, CET (UTC+1) after; CEST again from Sunday 29 March
 * 01:00 UTC. ISO weeks: W43 is Mon 19 – Sun 25 October, W44 Mon 26 October – Sun 1 November; W13 is Mon 23 – Sun 29 March,
 * W14 from Mon 30 March.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient } from "../../server/db/prisma.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";

const VM1 = "11111111-1111-4111-8111-111111111111";
const VM2 = "22222222-2222-4222-8222-222222222222";
const VM3 = "33333333-3333-4333-8333-333333333333";

type Status = "SUCCESS" | "FAILURE" | "INTERRUPTED" | "CANCELLED";

interface SeededRun {
  name: string;
  job: "nightly" | "weekly" | null;
  kind?: "BACKUP" | "RESTORE";
  createdAt: string;
  status: Status;
  /** null: never started (no start, ended at creation). */
  seconds: number | null;
  bytes: number;
  tasks: { kind: string; vm: string; status: Status; size?: number; seconds: number | null }[];
}

// nightly writes to the remotes "nas" and "s3", weekly to "s3" only.
const RUNS: SeededRun[] = [
  // Paris: Sun 25 Oct 00:30 CEST (W43). UTC: Sat 24 Oct (W43).
  {
    name: "r1",
    job: "nightly",
    createdAt: "2026-10-24T22:30:00Z",
    status: "SUCCESS",
    seconds: 100,
    bytes: 1000,
    tasks: [
      { kind: "vm", vm: VM1, status: "SUCCESS", size: 600, seconds: 60 },
      { kind: "disk", vm: VM1, status: "SUCCESS", size: 600, seconds: 55 },
      { kind: "vm", vm: VM2, status: "SUCCESS", size: 400, seconds: 40 },
    ],
  },
  // Paris: Mon 26 Oct 00:30 CET (W44), the night after the clocks went back. UTC: Sun 25 Oct (W43).
  {
    name: "r2",
    job: "nightly",
    createdAt: "2026-10-25T23:30:00Z",
    status: "FAILURE",
    seconds: 50,
    bytes: 0,
    tasks: [{ kind: "vm", vm: VM1, status: "FAILURE", seconds: 50 }],
  },
  // Mon 26 Oct in both (W44).
  {
    name: "r3",
    job: "weekly",
    createdAt: "2026-10-26T12:00:00Z",
    status: "INTERRUPTED",
    seconds: 30,
    bytes: 10,
    tasks: [{ kind: "vm", vm: VM2, status: "INTERRUPTED", size: 10, seconds: 30 }],
  },
  // Paris: Tue 27 Oct 00:00 CET. UTC: Mon 26 Oct 23:00.
  {
    name: "r6",
    job: "weekly",
    createdAt: "2026-10-26T23:00:00Z",
    status: "SUCCESS",
    seconds: 200,
    bytes: 300,
    tasks: [{ kind: "vm", vm: VM1, status: "SUCCESS", size: 300, seconds: 200 }],
  },
  // Cancelled before it started: counted as a run, neither succeeded nor failed, no duration.
  {
    name: "r4",
    job: "nightly",
    createdAt: "2026-10-28T08:00:00Z",
    status: "CANCELLED",
    seconds: null,
    bytes: 5,
    tasks: [{ kind: "vm", vm: VM1, status: "CANCELLED", size: 5, seconds: null }],
  },
  // Not backups, or outside the ranges: in no figure.
  {
    name: "restore",
    job: null,
    kind: "RESTORE",
    createdAt: "2026-10-26T10:00:00Z",
    status: "SUCCESS",
    seconds: 30,
    bytes: 700,
    tasks: [{ kind: "vm", vm: VM1, status: "SUCCESS", size: 700, seconds: 30 }],
  },
  {
    name: "before",
    job: "nightly",
    createdAt: "2026-10-18T21:59:59Z",
    status: "SUCCESS",
    seconds: 100,
    bytes: 999,
    tasks: [{ kind: "vm", vm: VM1, status: "SUCCESS", size: 999, seconds: 100 }],
  },
  // Spring: Paris Sun 29 Mar 00:30 CET (W13); UTC Sat 28 Mar (W13).
  { name: "m1", job: "nightly", createdAt: "2026-03-28T23:30:00Z", status: "SUCCESS", seconds: 20, bytes: 7, tasks: [] },
  // Paris Mon 30 Mar 00:30 CEST (W14), the night after the clocks went forward; UTC Sun 29 Mar (W13).
  { name: "m2", job: "nightly", createdAt: "2026-03-29T22:30:00Z", status: "FAILURE", seconds: 40, bytes: 3, tasks: [] },
];

/** Restore points: [run, remote, vm, size, extra]. The trigger on RestorePoint records each in RestorePointHistory. */
const POINTS: { run: string | null; remote: "nas" | "s3"; vm: string; size: number; at?: string; broken?: "verify" | "integrity" }[] = [
  { run: "r1", remote: "nas", vm: VM1, size: 500 },
  { run: "r1", remote: "nas", vm: VM2, size: 300 },
  { run: "r1", remote: "s3", vm: VM1, size: 550 },
  { run: "r1", remote: "s3", vm: VM2, size: 350 },
  { run: "r6", remote: "s3", vm: VM1, size: 250 },
  // weekly once wrote to nas too (not one of its remotes now); the health check of that point failed.
  { run: "r3", remote: "nas", vm: VM2, size: 10, broken: "verify" },
  // A later point of VM1 that verify found damaged: no protection.
  { run: null, remote: "nas", vm: VM1, size: 1, at: "2026-10-28T09:00:00Z", broken: "integrity" },
];

const PARIS = { from: "2026-10-18T22:00:00Z", to: "2026-11-01T23:00:00Z" }; // Mon 19 Oct – Sun 1 Nov in Paris
const SPRING = { from: "2026-03-22T23:00:00Z", to: "2026-04-05T22:00:00Z" }; // Mon 23 Mar – Sun 5 Apr in Paris

describe("reporting figures", () => {
  let server: TestCairn;
  let token: string;
  const remotes: Record<string, string> = {};

  beforeAll(async () => {
    server = await startTestCairn();
    token = await server.login();
    const db = createPrismaClient(server.database.url);
    try {
      const pool = await db.pool.create({ data: { name: "figures pool", url: "http://192.0.2.1", username: "root", passwordSealed: "x" } });
      await db.vmInventory.createMany({
        data: [
          { uuid: VM1, poolId: pool.id, name: "web", tags: [], powerState: "Running" },
          { uuid: VM2, poolId: pool.id, name: "db", tags: [], powerState: "Running" },
          { uuid: VM3, poolId: pool.id, name: "idle", tags: [], powerState: "Halted" },
        ],
      });
      for (const name of ["nas", "s3"]) {
        remotes[name] = (await db.remote.create({ data: { name, kind: "LOCAL", location: `/srv/${name}` } })).id;
      }
      const jobs: Record<string, string> = {};
      for (const [name, targets] of [
        ["nightly", ["nas", "s3"]],
        ["weekly", ["s3"]],
      ] as const) {
        jobs[name] = (
          await db.job.create({
            data: {
              name,
              mode: "FULL",
              selection: { vmUuids: [VM1, VM2] },
              srUuids: [],
              settings: {},
              remotes: { create: targets.map((t) => ({ remoteId: remotes[t] })) },
            },
          })
        ).id;
      }
      const runs: Record<string, { id: string; createdAt: Date }> = {};
      for (const run of RUNS) {
        const createdAt = new Date(run.createdAt);
        const created = await db.run.create({
          data: {
            kind: run.kind ?? "BACKUP",
            jobId: run.job ? jobs[run.job] : null,
            trigger: "SCHEDULE",
            status: run.status,
            createdAt,
            startedAt: run.seconds === null ? null : createdAt,
            endedAt: run.seconds === null ? createdAt : new Date(createdAt.getTime() + run.seconds * 1000),
            transferredBytes: BigInt(run.bytes),
          },
        });
        runs[run.name] = { id: created.id, createdAt };
        await db.task.createMany({
          data: run.tasks.map((task, position) => ({
            runId: created.id,
            position,
            kind: task.kind,
            name: task.kind,
            status: task.status,
            vmUuid: task.vm,
            sizeBytes: task.size === undefined ? null : BigInt(task.size),
            startedAt: createdAt,
            endedAt: task.seconds === null ? null : new Date(createdAt.getTime() + task.seconds * 1000),
          })),
        });
      }
      for (const [i, point] of POINTS.entries()) {
        const jobOfRun = RUNS.find((run) => run.name === point.run)?.job;
        await db.restorePoint.create({
          data: {
            kind: "XVA",
            vmUuid: point.vm,
            vmName: point.vm === VM1 ? "web" : "db",
            timestamp: point.at ? new Date(point.at) : runs[point.run!].createdAt,
            sizeBytes: BigInt(point.size),
            remoteId: remotes[point.remote],
            path: `point-${i}.json`,
            runId: point.run ? runs[point.run].id : null,
            jobId: jobOfRun ? jobs[jobOfRun] : null,
            verificationStatus: point.broken === "verify" ? "FAILED" : "OK",
            integrityStatus: point.broken === "integrity" ? "DAMAGED" : "OK",
          },
        });
      }
      // Retention removed r1's copy of db on nas: its bytes stay in r1's figures (RestorePointHistory), its protection goes.
      await db.restorePoint.delete({ where: { remoteId_path: { remoteId: remotes.nas, path: "point-1.json" } } });
    } finally {
      await db.$disconnect();
    }
  }, 120_000);
  afterAll(() => stopAll(() => server?.stop()));

  const FIELDS = "key label runs succeeded failed successRate bytes durationSeconds avgDurationSeconds maxDurationSeconds";
  const ask = async (groupBy: string, range: { from: string; to: string }, timeZone?: string) => {
    const { data, errors } = await server.graphql<{ backupStats: Record<string, unknown>[] }>(
      `query($from: DateTime!, $to: DateTime!, $g: StatsGroupBy!, $tz: String) { backupStats(from: $from, to: $to, groupBy: $g, timeZone: $tz) { ${FIELDS} } }`,
      { ...range, g: groupBy, tz: timeZone ?? null },
      token,
    );
    expect(errors).toBeUndefined();
    return data!.backupStats;
  };
  const bucket = (key: string, f: [number, number, number, number | null, number, number, number | null, number | null], label = key) => ({
    key,
    label,
    runs: f[0],
    succeeded: f[1],
    failed: f[2],
    successRate: f[3],
    bytes: f[4],
    durationSeconds: f[5],
    avgDurationSeconds: f[6],
    maxDurationSeconds: f[7],
  });

  describe("backupStats", () => {
    it("counts days in the asked time zone: a run at 23:30 UTC is the next day in Paris", async () => {
      expect(await ask("DAY", PARIS, "Europe/Paris")).toEqual([
        bucket("2026-10-25", [1, 1, 0, 1, 1000, 100, 100, 100]),
        // r2 (FAILURE, 50 s, 0 B) and r3 (INTERRUPTED, 30 s, 10 B).
        bucket("2026-10-26", [2, 0, 2, 0, 10, 80, 40, 50]),
        bucket("2026-10-27", [1, 1, 0, 1, 300, 200, 200, 200]),
        // r4 was cancelled before it started: a run, no outcome, no duration.
        bucket("2026-10-28", [1, 0, 0, null, 5, 0, null, null]),
      ]);
    });

    it("counts days in UTC by default", async () => {
      expect(await ask("DAY", PARIS)).toEqual([
        bucket("2026-10-24", [1, 1, 0, 1, 1000, 100, 100, 100]),
        bucket("2026-10-25", [1, 0, 1, 0, 0, 50, 50, 50]),
        // r3 (INTERRUPTED, 30 s, 10 B) and r6 (SUCCESS, 200 s, 300 B).
        bucket("2026-10-26", [2, 1, 1, 0.5, 310, 230, 115, 200]),
        bucket("2026-10-28", [1, 0, 0, null, 5, 0, null, null]),
      ]);
    });

    it("counts ISO weeks in the asked time zone across the autumn DST change", async () => {
      expect(await ask("WEEK", PARIS, "Europe/Paris")).toEqual([
        bucket("2026-W43", [1, 1, 0, 1, 1000, 100, 100, 100]),
        // r2, r3, r6, r4: 1 succeeded of 3 that ended; (50 + 30 + 200) / 3 = 93.3 s.
        bucket("2026-W44", [4, 1, 2, 0.3333, 315, 280, 93.3, 200]),
      ]);
      expect(await ask("WEEK", PARIS)).toEqual([
        bucket("2026-W43", [2, 1, 1, 0.5, 1000, 150, 75, 100]),
        bucket("2026-W44", [3, 1, 1, 0.5, 315, 230, 115, 200]),
      ]);
    });

    it("counts ISO weeks across the spring DST change", async () => {
      expect(await ask("WEEK", SPRING, "Europe/Paris")).toEqual([
        bucket("2026-W13", [1, 1, 0, 1, 7, 20, 20, 20]),
        bucket("2026-W14", [1, 0, 1, 0, 3, 40, 40, 40]),
      ]);
      expect(await ask("WEEK", SPRING)).toEqual([bucket("2026-W13", [2, 1, 1, 0.5, 10, 60, 30, 40])]);
      expect(await ask("DAY", SPRING, "Europe/Paris")).toEqual([
        bucket("2026-03-29", [1, 1, 0, 1, 7, 20, 20, 20]),
        bucket("2026-03-30", [1, 0, 1, 0, 3, 40, 40, 40]),
      ]);
    });

    it("counts per job", async () => {
      const byJob = await ask("JOB", PARIS, "Europe/Paris");
      const noKey = ({ key: _key, ...rest }: Record<string, unknown>) => rest;
      expect(byJob.map(noKey)).toEqual([
        // r1, r2, r4.
        noKey(bucket("", [3, 1, 1, 0.5, 1005, 150, 75, 100], "nightly")),
        // r3, r6.
        noKey(bucket("", [2, 1, 1, 0.5, 310, 230, 115, 200], "weekly")),
      ]);
    });

    it("counts per VM from its VM tasks (never its disk tasks)", async () => {
      expect(await ask("VM", PARIS)).toEqual([
        // r1 (400 B, 40 s) and r3 (INTERRUPTED, 10 B, 30 s).
        bucket(VM2, [2, 1, 1, 0.5, 410, 70, 35, 40], "db"),
        // r1 (600, 60 s), r2 (FAILURE, 50 s), r6 (300, 200 s), r4 (cancelled, 5 B): 2 of 3; (60 + 50 + 200) / 3 = 103.3 s.
        bucket(VM1, [4, 2, 1, 0.6667, 905, 310, 103.3, 200], "web"),
      ]);
    });

    it("counts per remote: runs of the jobs writing there and runs that left a restore point there, removed since or not", async () => {
      expect(await ask("REMOTE", PARIS)).toEqual([
        // nightly's r1, r2, r4 and weekly's r3 (its point on nas); bytes 500 + 300 (removed since) + 10.
        bucket(remotes.nas, [4, 1, 2, 0.3333, 810, 180, 60, 100], "nas"),
        // r1, r2, r4, r3, r6; bytes 550 + 350 + 250.
        bucket(remotes.s3, [5, 2, 2, 0.5, 1150, 380, 95, 200], "s3"),
      ]);
    });

    it("refuses a time zone that is not an IANA name, saying what to give", async () => {
      for (const zone of ["Mars/Olympus", "+01:00", "Europe/Paris; DROP TABLE"]) {
        const { errors } = await server.graphql(
          'query($tz: String) { backupStats(from: "2026-10-01T00:00:00Z", to: "2026-11-01T00:00:00Z", groupBy: DAY, timeZone: $tz) { key } }',
          { tz: zone },
          token,
        );
        expect(errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
        expect(errors?.[0].message).toMatch(/IANA name such as Europe\/Paris/);
      }
    });
  });

  describe("vmProtection", () => {
    const protection = async (at: string, olderThanHours?: number) => {
      const { data, errors } = await server.graphql<{
        vmProtection: {
          vm: { name: string };
          lastGoodRestorePoint: { timestamp: string } | null;
          ageHours: number | null;
          protected: boolean;
        }[];
      }>(
        "query($at: DateTime, $h: Int) { vmProtection(at: $at, olderThanHours: $h) { vm { name } lastGoodRestorePoint { timestamp } ageHours protected } }",
        { at, h: olderThanHours ?? null },
        token,
      );
      expect(errors).toBeUndefined();
      return data!.vmProtection.map((p) => ({
        vm: p.vm.name,
        at: p.lastGoodRestorePoint?.timestamp ?? null,
        ageHours: p.ageHours,
        protected: p.protected,
      }));
    };

    it("takes each VM's newest restore point not known to be broken, and its age at the time asked", async () => {
      // web: r6's point (26 Oct 23:00) is 37 h old; its 28 Oct point is DAMAGED. db: r1's s3 point (24 Oct 22:30), 85.5 h;
      // its r3 point failed its health check. idle: none.
      expect(await protection("2026-10-28T12:00:00Z", 48)).toEqual([
        { vm: "db", at: "2026-10-24T22:30:00.000Z", ageHours: 85.5, protected: false },
        { vm: "idle", at: null, ageHours: null, protected: false },
        { vm: "web", at: "2026-10-26T23:00:00.000Z", ageHours: 37, protected: true },
      ]);
      // Default threshold 24 h.
      expect((await protection("2026-10-28T12:00:00Z")).map((p) => p.protected)).toEqual([false, false, false]);
      // Earlier: only r1's points existed.
      expect(await protection("2026-10-25T00:00:00Z")).toEqual([
        { vm: "db", at: "2026-10-24T22:30:00.000Z", ageHours: 1.5, protected: true },
        { vm: "idle", at: null, ageHours: null, protected: false },
        { vm: "web", at: "2026-10-24T22:30:00.000Z", ageHours: 1.5, protected: true },
      ]);
    });

    it("names each VM's pool and each point's job, asked directly or through fragments", async () => {
      // The list gives its items these two fields (graphql/batch.ts, giveField) only when they are asked for: both ways.
      const direct = `query($at: DateTime) { vmProtection(at: $at) {
        vm { name pool { name } } lastGoodRestorePoint { timestamp job { name } } } }`;
      const throughFragments = `query($at: DateTime) { vmProtection(at: $at) { ...Item } }
        fragment Item on VmProtection { vm { name ...OnVm } lastGoodRestorePoint { timestamp ... on RestorePoint { job { name } } } }
        fragment OnVm on Vm { pool { name } }`;
      for (const query of [direct, throughFragments]) {
        const { data, errors } = await server.graphql<{
          vmProtection: {
            vm: { name: string; pool: { name: string } | null };
            lastGoodRestorePoint: { job: { name: string } | null } | null;
          }[];
        }>(query, { at: "2026-10-28T12:00:00Z" }, token);
        expect(errors).toBeUndefined();
        // db's point is r1's (nightly), web's r6's (weekly); idle has none.
        expect(data!.vmProtection.map((p) => [p.vm.name, p.vm.pool?.name ?? null, p.lastGoodRestorePoint?.job?.name ?? null])).toEqual([
          ["db", "figures pool", "nightly"],
          ["idle", "figures pool", null],
          ["web", "figures pool", "weekly"],
        ]);
      }
    });
  });
});
