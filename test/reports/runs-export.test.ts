/**
 * exportRuns: the run history as CSV and JSON through a short-lived, single-use link. Content exactness (byte for byte for a
 * small seeded set, RFC 4180 quoting, formula-injection prefixes), the runs(filter) filters, keyset paging over more rows
 * than one page with ties on createdAt, and refusal of used, expired, unknown and foreign links.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient } from "../../server/db/prisma.js";
import { hashToken } from "../../server/security/tokens.js";
import { createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";

const VM1 = "11111111-1111-4111-8111-111111111111";
const VM2 = "22222222-2222-4222-8222-222222222222";
const HEADER =
  "id,kind,status,trigger,jobId,jobName,scheduleId,createdAt,startedAt,endedAt,durationSeconds,transferredBytes,vmsTotal,vmsSucceeded,vmsFailed,vmUuids,skipReason,error\r\n";

describe("exportRuns", () => {
  let server: TestCairn;
  let token: string;
  let db: ReturnType<typeof createPrismaClient>;
  const ids: Record<string, string> = {};
  const jobs: Record<string, string> = {};

  beforeAll(async () => {
    server = await startTestCairn();
    token = await server.login();
    db = createPrismaClient(server.database.url);
    jobs.a = (
      await db.job.create({ data: { name: "nightly, eu", mode: "FULL", selection: { vmUuids: [VM1, VM2] }, srUuids: [], settings: {} } })
    ).id;
    jobs.b = (
      await db.job.create({ data: { name: "=cmd|' /C calc'!A0", mode: "FULL", selection: { vmUuids: [VM1] }, srUuids: [], settings: {} } })
    ).id;
    ids.a = (
      await db.run.create({
        data: {
          jobId: jobs.a,
          trigger: "SCHEDULE",
          status: "SUCCESS",
          createdAt: new Date("2026-11-02T10:00:00Z"),
          startedAt: new Date("2026-11-02T10:00:00Z"),
          endedAt: new Date("2026-11-02T10:01:30.500Z"),
          transferredBytes: 1048576n,
          vmsTotal: 2,
          vmsSucceeded: 2,
          vmUuids: [VM1, VM2],
        },
      })
    ).id;
    ids.b = (
      await db.run.create({
        data: {
          jobId: jobs.b,
          trigger: "MANUAL",
          status: "FAILURE",
          createdAt: new Date("2026-11-03T10:00:00Z"),
          startedAt: new Date("2026-11-03T10:00:00Z"),
          endedAt: new Date("2026-11-03T10:00:30Z"),
          vmsTotal: 1,
          vmsFailed: 1,
          vmUuids: [VM1],
          error: 'disk "xvda" failed,\nretry later',
        },
      })
    ).id;
    ids.c = (
      await db.run.create({
        data: {
          trigger: "API",
          status: "SKIPPED",
          skipReason: "JOB_BUSY",
          createdAt: new Date("2026-11-04T10:00:00Z"),
          endedAt: new Date("2026-11-04T10:00:00Z"),
          error: "-1 blocks; @admin +x",
        },
      })
    ).id;
  }, 120_000);
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  const link = async (format: "CSV" | "JSON", filter: Record<string, unknown> | null = null, as = token) => {
    const { data, errors } = await server.graphql<{ exportRuns: { url: string; expiresAt: string } }>(
      "mutation($filter: RunFilter, $format: ExportFormat!) { exportRuns(filter: $filter, format: $format) { url expiresAt } }",
      { filter, format },
      as,
    );
    expect(errors).toBeUndefined();
    expect(data!.exportRuns.url).toMatch(/^\/export\/runs\/cairn_[\w-]+$/);
    return data!.exportRuns.url;
  };
  const download = (url: string) => fetch(`${server.url}${url}`);
  const json = async (filter: Record<string, unknown> | null) => {
    const response = await download(await link("JSON", filter));
    expect(response.status).toBe(200);
    return (await response.json()) as { id: string }[];
  };

  it("writes CSV exactly: header, newest first, RFC 4180 quoting, formula cells prefixed", async () => {
    const response = await download(await link("CSV"));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/csv; charset=utf-8/);
    expect(response.headers.get("content-disposition")).toMatch(/^attachment; filename="cairn-runs-\d{8}T\d{6}\.csv"$/);
    expect(await response.text()).toBe(
      HEADER +
        `${ids.c},BACKUP,SKIPPED,API,,,,2026-11-04T10:00:00.000Z,,2026-11-04T10:00:00.000Z,,0,0,0,0,,JOB_BUSY,'-1 blocks; @admin +x\r\n` +
        `${ids.b},BACKUP,FAILURE,MANUAL,${jobs.b},'=cmd|' /C calc'!A0,,2026-11-03T10:00:00.000Z,2026-11-03T10:00:00.000Z,2026-11-03T10:00:30.000Z,30,0,1,0,1,${VM1},,"disk ""xvda"" failed,\nretry later"\r\n` +
        `${ids.a},BACKUP,SUCCESS,SCHEDULE,${jobs.a},"nightly, eu",,2026-11-02T10:00:00.000Z,2026-11-02T10:00:00.000Z,2026-11-02T10:01:30.500Z,90.5,1048576,2,2,0,${VM1} ${VM2},,\r\n`,
    );
  });

  it("writes JSON: one array of the same columns, values as they are", async () => {
    const response = await download(await link("JSON"));
    expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await response.json()).toEqual([
      {
        id: ids.c,
        kind: "BACKUP",
        status: "SKIPPED",
        trigger: "API",
        jobId: null,
        jobName: null,
        scheduleId: null,
        createdAt: "2026-11-04T10:00:00.000Z",
        startedAt: null,
        endedAt: "2026-11-04T10:00:00.000Z",
        durationSeconds: null,
        transferredBytes: 0,
        vmsTotal: 0,
        vmsSucceeded: 0,
        vmsFailed: 0,
        vmUuids: [],
        skipReason: "JOB_BUSY",
        error: "-1 blocks; @admin +x",
      },
      {
        id: ids.b,
        kind: "BACKUP",
        status: "FAILURE",
        trigger: "MANUAL",
        jobId: jobs.b,
        jobName: "=cmd|' /C calc'!A0",
        scheduleId: null,
        createdAt: "2026-11-03T10:00:00.000Z",
        startedAt: "2026-11-03T10:00:00.000Z",
        endedAt: "2026-11-03T10:00:30.000Z",
        durationSeconds: 30,
        transferredBytes: 0,
        vmsTotal: 1,
        vmsSucceeded: 0,
        vmsFailed: 1,
        vmUuids: [VM1],
        skipReason: null,
        error: 'disk "xvda" failed,\nretry later',
      },
      {
        id: ids.a,
        kind: "BACKUP",
        status: "SUCCESS",
        trigger: "SCHEDULE",
        jobId: jobs.a,
        jobName: "nightly, eu",
        scheduleId: null,
        createdAt: "2026-11-02T10:00:00.000Z",
        startedAt: "2026-11-02T10:00:00.000Z",
        endedAt: "2026-11-02T10:01:30.500Z",
        durationSeconds: 90.5,
        transferredBytes: 1048576,
        vmsTotal: 2,
        vmsSucceeded: 2,
        vmsFailed: 0,
        vmUuids: [VM1, VM2],
        skipReason: null,
        error: null,
      },
    ]);
  });

  it("filters like runs(filter)", async () => {
    const idsOf = async (filter: Record<string, unknown>) => (await json(filter)).map((r) => r.id);
    expect(await idsOf({ status: ["FAILURE"] })).toEqual([ids.b]);
    expect(await idsOf({ jobId: jobs.a })).toEqual([ids.a]);
    expect(await idsOf({ from: "2026-11-03T00:00:00Z", to: "2026-11-04T10:00:00Z" })).toEqual([ids.b]);
    expect(await idsOf({ search: "NIGHTLY" })).toEqual([ids.a]);
    expect(await idsOf({ vmUuid: VM2 })).toEqual([ids.a]);
    expect(await idsOf({ status: ["RUNNING"] })).toEqual([]);
  });

  it("refuses a bad filter when the link is asked for, not when it is followed", async () => {
    const ask = (filter: Record<string, unknown>) =>
      server.graphql("mutation($f: RunFilter) { exportRuns(filter: $f, format: CSV) { url } }", { f: filter }, token);
    expect((await ask({ jobId: "00000000-0000-4000-8000-000000000000" })).errors?.[0].extensions?.code).toBe("NOT_FOUND");
    expect((await ask({ from: "2026-11-05T00:00:00Z", to: "2026-11-01T00:00:00Z" })).errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
  });

  it("lets a VIEWER export", async () => {
    const viewer = await createUser(server, "reader", "VIEWER");
    const response = await download(await link("CSV", { status: ["SUCCESS"] }, viewer));
    expect((await response.text()).split("\r\n")).toHaveLength(3); // header, one run, the empty tail
  });

  it("serves a link once, refuses it expired, and never serves a file restore's link", async () => {
    const used = await link("CSV");
    expect((await download(used)).status).toBe(200);
    const again = await download(used);
    expect(again.status).toBe(404);
    expect(((await again.json()) as { error: string }).error).toMatch(/already used/);

    const expired = await link("CSV");
    await db.downloadToken.update({
      where: { tokenHash: hashToken(expired.split("/").at(-1)!) },
      data: { expiresAt: new Date(Date.now() - 1000) },
    });
    const late = await download(expired);
    expect(late.status).toBe(410);
    expect(((await late.json()) as { error: string }).error).toMatch(/expired/);

    expect((await download("/export/runs/cairn_nothing")).status).toBe(404);

    const foreign = "cairn_a-file-restore-link-xxxxxxxxxxxxxxxxxxxxxx";
    await db.downloadToken.create({
      data: {
        tokenHash: hashToken(foreign),
        request: { restorePointId: ids.a, disk: 0, paths: ["/"] },
        expiresAt: new Date(Date.now() + 60_000),
      },
    });
    expect((await download(`/export/runs/${foreign}`)).status).toBe(404);
    expect((await db.downloadToken.findUniqueOrThrow({ where: { tokenHash: hashToken(foreign) } })).usedAt).toBeNull();

    // The other way round: the file-restore route neither serves an export link nor uses it up.
    const exportLink = await link("CSV");
    expect((await download(`/download/${exportLink.split("/").at(-1)}`)).status).toBe(404);
    expect((await download(exportLink)).status).toBe(200);
  });

  it("pages through more runs than one page, ties on createdAt included, each once, newest first", async () => {
    const times = ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z"].map((t) => new Date(t));
    await db.run.createMany({
      data: Array.from({ length: 2_500 }, (_, i) => ({ trigger: "API" as const, status: "SUCCESS" as const, createdAt: times[i % 3] })),
    });
    const rows = (await json({ from: "2025-01-01T00:00:00Z", to: "2025-02-01T00:00:00Z" })) as { id: string; createdAt: string }[];
    expect(rows).toHaveLength(2_500);
    expect(new Set(rows.map((r) => r.id)).size).toBe(2_500);
    const sorted = [...rows].sort((x, y) => (x.createdAt === y.createdAt ? (x.id < y.id ? 1 : -1) : x.createdAt < y.createdAt ? 1 : -1));
    expect(rows.map((r) => r.id)).toEqual(sorted.map((r) => r.id));
    const csv = await (await download(await link("CSV", { from: "2025-01-01T00:00:00Z", to: "2025-02-01T00:00:00Z" }))).text();
    expect(csv.split("\r\n")).toHaveLength(2_502);
  });
});
