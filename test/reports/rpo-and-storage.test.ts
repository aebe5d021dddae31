/**
 * vmRpo / rpoReport (the RPO each VM achieved against the target of its schedules) and storageTrend (bytes held on remotes
 * over time), against gaps and sums worked out by hand from restore points seeded straight into Postgres.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient } from "../../server/db/prisma.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";

const APP = "aaaaaaaa-0000-4000-8000-000000000001";
const FILES = "aaaaaaaa-0000-4000-8000-000000000002";
const LAB = "aaaaaaaa-0000-4000-8000-000000000003";
const ALONE = "aaaaaaaa-0000-4000-8000-000000000004";

describe("RPO and storage trend", () => {
  let server: TestCairn;
  let token: string;
  const remotes: Record<string, string> = {};
  let db: ReturnType<typeof createPrismaClient>;

  beforeAll(async () => {
    server = await startTestCairn();
    token = await server.login();
    db = createPrismaClient(server.database.url);
    const pool = await db.pool.create({ data: { name: "rpo pool", url: "http://192.0.2.1", username: "root", passwordSealed: "x" } });
    await db.vmInventory.createMany({
      data: [
        { uuid: APP, poolId: pool.id, name: "app", tags: [], powerState: "Running" },
        { uuid: FILES, poolId: pool.id, name: "files", tags: ["office"], powerState: "Running" },
        { uuid: LAB, poolId: pool.id, name: "lab", tags: [], powerState: "Halted" },
        { uuid: ALONE, poolId: pool.id, name: "zz-alone", tags: [], powerState: "Running" },
      ],
    });
    for (const name of ["nas", "s3"])
      remotes[name] = (await db.remote.create({ data: { name, kind: "LOCAL", location: `/srv/${name}` } })).id;
    const job = (name: string, selection: object, schedules: { cron: string; timezone?: string; enabled?: boolean }[], enabled = true) =>
      db.job.create({
        data: {
          name,
          mode: "FULL",
          enabled,
          selection,
          srUuids: [],
          settings: {},
          schedules: { create: schedules.map((s) => ({ cron: s.cron, timezone: s.timezone ?? "UTC", enabled: s.enabled ?? true })) },
        },
      });
    // app: daily at 02:00 (86,400 s) and in "weekdays" (14:00 Monday to Friday: longest interval Friday to Monday, 259,200 s):
    // its target is the tightest, 86,400 s. files: only "weekdays", by tag. lab: only a disabled job. An hourly schedule that
    // is disabled counts for nobody.
    await job("daily", { vmUuids: [APP] }, [{ cron: "0 2 * * *" }, { cron: "0 * * * *", enabled: false }]);
    await job("weekdays", { smart: { poolIds: [], tagsAll: [], tagsAny: ["office"], tagsNone: [], powerStates: [] }, vmUuids: [] }, [
      { cron: "0 14 * * 1-5" },
    ]);
    await job("weekdays-app", { vmUuids: [APP] }, [{ cron: "0 14 * * 1-5" }]);
    await job("paused", { vmUuids: [LAB] }, [{ cron: "0 * * * *" }], false);
  }, 120_000);
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  const point = (vm: string, name: string, timestamp: string, extra: Record<string, unknown> = {}) =>
    db.restorePoint.create({
      data: {
        kind: "XVA",
        vmUuid: vm,
        vmName: name,
        timestamp: new Date(timestamp),
        remoteId: remotes.nas,
        path: `${vm}/${timestamp}.json`,
        verificationStatus: "OK",
        ...extra,
      },
    });

  describe("vmRpo", () => {
    const PERIOD = { from: "2026-11-02T00:00:00Z", to: "2026-11-06T00:00:00Z" };
    const FIELDS = "vm { name } targetSeconds graceSeconds maxGapSeconds currentGapSeconds restorePoints goodRestorePoints met";

    beforeAll(async () => {
      await point(APP, "app", "2026-11-01T02:05:00Z"); // before the period: opens its first gap
      await point(APP, "app", "2026-11-02T02:03:00Z");
      await point(APP, "app", "2026-11-03T02:10:00Z");
      await point(APP, "app", "2026-11-04T02:00:00Z", { integrityStatus: "DAMAGED" });
      await point(APP, "app", "2026-11-05T02:20:00Z");
      await point(FILES, "files", "2026-11-02T14:05:00Z");
      await point(FILES, "files", "2026-11-03T14:02:00Z");
      await point(FILES, "files", "2026-11-05T14:30:00Z");
      await point(LAB, "lab", "2026-11-03T00:00:00Z");
    });

    it("gives a VM's restore points with the gap since the previous good one, and the RPO achieved against the target", async () => {
      const { data, errors } = await server.graphql<{ vmRpo: Record<string, unknown> & { points: unknown[] } }>(
        `query($vm: String!, $from: DateTime, $to: DateTime) { vmRpo(vmUuid: $vm, from: $from, to: $to) { ${FIELDS} points { timestamp good gapSeconds } } }`,
        { vm: APP, ...PERIOD },
        token,
      );
      expect(errors).toBeUndefined();
      expect(data!.vmRpo).toEqual({
        vm: { name: "app" },
        targetSeconds: 86_400,
        graceSeconds: 3_600,
        // 3 Nov 02:10 -> 5 Nov 02:20 (4 Nov's point is damaged): 2 days and 10 minutes.
        maxGapSeconds: 173_400,
        // 5 Nov 02:20 -> 6 Nov 00:00.
        currentGapSeconds: 78_000,
        restorePoints: 4,
        goodRestorePoints: 3,
        met: false,
        points: [
          { timestamp: "2026-11-02T02:03:00.000Z", good: true, gapSeconds: 86_280 }, // from 1 Nov 02:05
          { timestamp: "2026-11-03T02:10:00.000Z", good: true, gapSeconds: 86_820 },
          { timestamp: "2026-11-04T02:00:00.000Z", good: false, gapSeconds: null },
          { timestamp: "2026-11-05T02:20:00.000Z", good: true, gapSeconds: 173_400 },
        ],
      });
    });

    it("reports every VM: met within target plus grace, missed, and no target", async () => {
      const { data, errors } = await server.graphql<{ rpoReport: unknown[] }>(
        `query($from: DateTime, $to: DateTime) { rpoReport(from: $from, to: $to) { ${FIELDS} } }`,
        PERIOD,
        token,
      );
      expect(errors).toBeUndefined();
      expect(data!.rpoReport).toEqual([
        {
          vm: { name: "app" },
          targetSeconds: 86_400,
          graceSeconds: 3_600,
          maxGapSeconds: 173_400,
          currentGapSeconds: 78_000,
          restorePoints: 4,
          goodRestorePoints: 3,
          met: false,
        },
        // Weekdays only: Friday to Monday is 259,200 s; its longest gap, 3 Nov 14:02 -> 5 Nov 14:30, is 174,480 s.
        {
          vm: { name: "files" },
          targetSeconds: 259_200,
          graceSeconds: 3_600,
          maxGapSeconds: 174_480,
          currentGapSeconds: 34_200,
          restorePoints: 3,
          goodRestorePoints: 3,
          met: true,
        },
        // Only in a disabled job: no target, so not met whatever its gaps (3 Nov 00:00 -> 6 Nov 00:00).
        {
          vm: { name: "lab" },
          targetSeconds: null,
          graceSeconds: 0,
          maxGapSeconds: 259_200,
          currentGapSeconds: 259_200,
          restorePoints: 1,
          goodRestorePoints: 1,
          met: false,
        },
        {
          vm: { name: "zz-alone" },
          targetSeconds: null,
          graceSeconds: 0,
          maxGapSeconds: null,
          currentGapSeconds: null,
          restorePoints: 0,
          goodRestorePoints: 0,
          met: false,
        },
      ]);
    });

    it("answers NOT_FOUND for a VM it never saw and BAD_USER_INPUT for a malformed uuid", async () => {
      const ask = (vm: string) => server.graphql("query($vm: String!) { vmRpo(vmUuid: $vm) { met } }", { vm }, token);
      expect((await ask("aaaaaaaa-0000-4000-8000-00000000ffff")).errors?.[0].extensions?.code).toBe("NOT_FOUND");
      expect((await ask("not-a-uuid")).errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
    });
  });

  describe("storageTrend", () => {
    const VM_A = "bbbbbbbb-0000-4000-8000-000000000001";
    const VM_B = "bbbbbbbb-0000-4000-8000-000000000002";

    beforeAll(async () => {
      await db.$executeRaw`DELETE FROM "RestorePointHistory"`;
      const add = (vm: string, name: string, remote: string, timestamp: string, size: number) =>
        db.restorePoint.create({
          data: {
            kind: "XVA",
            vmUuid: vm,
            vmName: name,
            timestamp: new Date(timestamp),
            sizeBytes: BigInt(size),
            remoteId: remotes[remote],
            path: `trend/${vm}/${timestamp}.json`,
          },
        });
      const p1 = await add(VM_A, "alpha", "nas", "2026-11-02T10:00:00Z", 100);
      await add(VM_B, "beta", "nas", "2026-11-02T23:30:00Z", 50); // Paris: 3 Nov 00:30
      await add(VM_A, "alpha", "s3", "2026-11-03T10:00:00Z", 200);
      await add(VM_A, "alpha", "nas", "2026-11-04T10:00:00Z", 120);
      await add(VM_A, "alpha", "s3", "2026-11-10T00:00:00Z", 300);
      // A pool snapshot holds no remote bytes: not in the ledger.
      await db.restorePoint.create({
        data: { kind: "SNAPSHOT", vmUuid: VM_A, vmName: "alpha", timestamp: new Date("2026-11-03T00:00:00Z"), sizeBytes: 999n },
      });
      // Retention removes p1: the trigger stamps its removal; it is set here to a known time for the sums below.
      await db.restorePoint.delete({ where: { id: p1.id } });
      const removed = await db.restorePointHistory.findUniqueOrThrow({ where: { id: p1.id } });
      expect(removed.removedAt).not.toBeNull();
      expect(removed.sizeBytes).toBe(100n);
      await db.restorePointHistory.update({ where: { id: p1.id }, data: { removedAt: new Date("2026-11-04T12:00:00Z") } });
      expect(await db.restorePointHistory.count()).toBe(5);
    });

    const trend = async (vars: { from: string; to: string; groupBy: string; interval?: string; timeZone?: string }) => {
      const { data, errors } = await server.graphql<{
        storageTrend: {
          key: string;
          label: string;
          points: { bucket: string; start: string; at: string; bytes: number; restorePoints: number }[];
        }[];
      }>(
        "query($from: DateTime!, $to: DateTime!, $groupBy: StorageGroupBy!, $interval: TrendInterval, $timeZone: String) { storageTrend(from: $from, to: $to, groupBy: $groupBy, interval: $interval, timeZone: $timeZone) { key label points { bucket start at bytes restorePoints } } }",
        { interval: null, timeZone: null, ...vars },
        token,
      );
      expect(errors).toBeUndefined();
      return data!.storageTrend;
    };
    const bytes = (series: Awaited<ReturnType<typeof trend>>) =>
      Object.fromEntries(series.map((s) => [s.label, s.points.map((p) => [p.bucket, p.bytes, p.restorePoints])]));

    it("sums each remote's restore points present at the end of each UTC day, removed ones until their removal", async () => {
      const series = await trend({ from: "2026-11-02T00:00:00Z", to: "2026-11-05T00:00:00Z", groupBy: "REMOTE" });
      expect(series.map((s) => s.key)).toEqual([remotes.nas, remotes.s3]);
      expect(bytes(series)).toEqual({
        nas: [
          ["2026-11-02", 150, 2],
          ["2026-11-03", 150, 2],
          // p1 (100) removed at 12:00; 50 + 120.
          ["2026-11-04", 170, 2],
        ],
        s3: [
          ["2026-11-02", 0, 0],
          ["2026-11-03", 200, 1],
          ["2026-11-04", 200, 1],
        ],
      });
      expect(series[0].points[0]).toMatchObject({ start: "2026-11-02T00:00:00.000Z", at: "2026-11-03T00:00:00.000Z" });
    });

    it("measures days of the asked time zone, per VM", async () => {
      const series = await trend({ from: "2026-11-01T23:00:00Z", to: "2026-11-04T23:00:00Z", groupBy: "VM", timeZone: "Europe/Paris" });
      expect(bytes(series)).toEqual({
        // End of 2 Nov in Paris is 23:00 UTC: beta's point (23:30 UTC) is on 3 Nov.
        alpha: [
          ["2026-11-02", 100, 1],
          ["2026-11-03", 300, 2],
          ["2026-11-04", 320, 2],
        ],
        beta: [
          ["2026-11-02", 0, 0],
          ["2026-11-03", 50, 1],
          ["2026-11-04", 50, 1],
        ],
      });
      expect(series[0].points[0]).toMatchObject({ start: "2026-11-01T23:00:00.000Z", at: "2026-11-02T23:00:00.000Z" });
    });

    it("measures ISO weeks, the last one at `to`", async () => {
      const series = await trend({ from: "2026-11-02T00:00:00Z", to: "2026-11-12T00:00:00Z", groupBy: "REMOTE", interval: "WEEK" });
      expect(bytes(series)).toEqual({
        nas: [
          ["2026-W45", 170, 2],
          ["2026-W46", 170, 2],
        ],
        s3: [
          ["2026-W45", 200, 1],
          ["2026-W46", 500, 2],
        ],
      });
      expect(series[1].points[1].at).toBe("2026-11-12T00:00:00.000Z");
    });

    it("refuses more than 400 buckets and a bad time zone", async () => {
      const ask = (vars: Record<string, unknown>) =>
        server.graphql(
          "query($from: DateTime!, $to: DateTime!, $tz: String) { storageTrend(from: $from, to: $to, groupBy: VM, timeZone: $tz) { key } }",
          { tz: null, ...vars },
          token,
        );
      expect((await ask({ from: "2024-01-01T00:00:00Z", to: "2026-01-01T00:00:00Z" })).errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
      expect(
        (await ask({ from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z", tz: "Nowhere/Land" })).errors?.[0].extensions?.code,
      ).toBe("BAD_USER_INPUT");
    });
  });
});
