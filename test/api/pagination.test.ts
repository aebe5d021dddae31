import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import type { RestorePointKind, RunStatus } from "../../server/db/generated/enums.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";
import { stopAll } from "../support/stop-all.js";

const PAGE = "totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } } nodes { id }";
const RUNS = `query($filter: RunFilter, $first: Int, $after: String) { runs(filter: $filter, first: $first, after: $after) { ${PAGE} } }`;
const JOB_RUNS = `query($id: ID!, $first: Int, $after: String) { job(id: $id) { runs(first: $first, after: $after) { ${PAGE} } } }`;
const RESTORE_POINTS = `query($filter: RestorePointFilter, $first: Int, $after: String) { restorePoints(filter: $filter, first: $first, after: $after) { ${PAGE} } }`;

const BASE = Date.parse("2025-03-01T00:00:00.000Z");
const minutes = (n: number) => new Date(BASE + n * 60_000);
const STATUSES: RunStatus[] = ["SUCCESS", "FAILURE", "SKIPPED", "SUCCESS", "INTERRUPTED"];

interface Page {
  totalCount: number;
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  edges: { cursor: string; node: { id: string } }[];
  nodes: { id: string }[];
}

/** Newest first by (time, id), the order the API promises. */
function newestFirst<T extends { id: string }>(rows: T[], time: (row: T) => Date): string[] {
  return [...rows].sort((a, b) => time(b).getTime() - time(a).getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)).map((r) => r.id);
}

describe("pagination of runs and restore points", () => {
  let server: TestCairn;
  let db: Db;
  let token: string;

  beforeAll(async () => {
    server = await startTestCairn();
    db = openDatabase(server);
    token = await server.login();
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  async function createJob(name: string) {
    return db.job.create({ data: { name, mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {} } });
  }

  /** 25 runs of a job: one a minute, the last five at the same instant (so the id breaks the tie). */
  async function insertRuns(jobId: string, count = 25, offset = 0, extra: (i: number) => object = () => ({})) {
    const rows = Array.from({ length: count }, (_, i) => ({
      id: randomUUID(),
      jobId,
      trigger: "SCHEDULE" as const,
      status: STATUSES[i % STATUSES.length],
      createdAt: minutes(offset + Math.min(i, 20)),
      vmUuids: [] as string[],
      ...extra(i),
    }));
    await db.run.createMany({ data: rows });
    return rows;
  }

  async function page(query: string, variables: Record<string, unknown>, pick: (data: any) => Page): Promise<Page> {
    return pick(expectData(await server.graphql<any>(query, variables, token)));
  }

  /** Follows endCursor until hasNextPage is false, checking each page's shape on the way. */
  async function pageThrough(query: string, variables: Record<string, unknown>, pick: (data: any) => Page, total: number, size = 10) {
    const seen: string[] = [];
    let after: string | null = null;
    for (let i = 0; ; i++) {
      const current = await page(query, { ...variables, first: size, after }, pick);
      expect(current.totalCount).toBe(total);
      expect(current.nodes.map((n) => n.id)).toEqual(current.edges.map((e) => e.node.id));
      expect(current.edges.length).toBe(Math.min(size, total - seen.length));
      expect(current.pageInfo.endCursor).toBe(current.edges.at(-1)?.cursor ?? null);
      seen.push(...current.nodes.map((n) => n.id));
      expect(current.pageInfo.hasNextPage).toBe(seen.length < total);
      if (!current.pageInfo.hasNextPage) break;
      expect(i).toBeLessThan(total);
      after = current.pageInfo.endCursor;
    }
    return seen;
  }

  describe("runs", () => {
    it("pages through 25 runs ten at a time, newest first, with no duplicate, no gap and the right totalCount", async () => {
      const job = await createJob("Paged Delta");
      const rows = await insertRuns(job.id);
      const seen = await pageThrough(RUNS, { filter: { jobId: job.id } }, (d) => d.runs, 25);
      expect(seen).toEqual(newestFirst(rows, (r) => r.createdAt));
      expect(new Set(seen).size).toBe(25);
    });

    it("pages the same way through job.runs", async () => {
      const job = await createJob("Paged Through Job");
      const rows = await insertRuns(job.id);
      const seen = await pageThrough(JOB_RUNS, { id: job.id }, (d) => d.job.runs, 25);
      expect(seen).toEqual(newestFirst(rows, (r) => r.createdAt));
    });

    it("keeps the next page unchanged when newer runs arrive between pages", async () => {
      const job = await createJob("Stable Gamma");
      const rows = await insertRuns(job.id);
      const order = newestFirst(rows, (r) => r.createdAt);
      const first = await page(RUNS, { filter: { jobId: job.id }, first: 10 }, (d) => d.runs);
      expect(first.nodes.map((n) => n.id)).toEqual(order.slice(0, 10));

      const newer = await insertRuns(job.id, 5, 60);
      const second = await page(RUNS, { filter: { jobId: job.id }, first: 10, after: first.pageInfo.endCursor }, (d) => d.runs);
      expect(second.nodes.map((n) => n.id)).toEqual(order.slice(10, 20));
      expect(second.totalCount).toBe(30);
      const third = await page(RUNS, { filter: { jobId: job.id }, first: 10, after: second.pageInfo.endCursor }, (d) => d.runs);
      expect(third.nodes.map((n) => n.id)).toEqual(order.slice(20));
      expect(third.pageInfo.hasNextPage).toBe(false);

      const fresh = await page(RUNS, { filter: { jobId: job.id }, first: 10 }, (d) => d.runs);
      expect(
        fresh.nodes
          .slice(0, 5)
          .map((n) => n.id)
          .sort(),
      ).toEqual(newer.map((r) => r.id).sort());
    });

    describe("filters", () => {
      let alpha: { id: string };
      let beta: { id: string };
      let alphaRuns: Awaited<ReturnType<typeof insertRuns>>;
      let betaRuns: Awaited<ReturnType<typeof insertRuns>>;
      const vm = randomUUID();

      beforeAll(async () => {
        alpha = await createJob("Nightly ALPHA export");
        beta = await createJob("Weekly beta copy");
        alphaRuns = await insertRuns(alpha.id, 25, 1000, (i) => ({ vmUuids: i % 4 === 0 ? [vm] : [] }));
        betaRuns = await insertRuns(beta.id, 12, 1000, (i) => ({ error: i === 3 ? "disk quota exceeded on remote zulu" : null }));
      });

      const ids = (rows: { id: string }[]) => rows.map((r) => r.id).sort();
      const within = async (filter: object, total: number) => {
        const seen = await pageThrough(RUNS, { filter }, (d) => d.runs, total, 7);
        return [...seen].sort();
      };

      it("narrows to one job with jobId", async () => {
        expect(await within({ jobId: beta.id }, 12)).toEqual(ids(betaRuns));
      });

      it("narrows to a list of statuses", async () => {
        const wanted = alphaRuns.filter((r) => r.status === "FAILURE" || r.status === "INTERRUPTED");
        expect(await within({ jobId: alpha.id, status: ["FAILURE", "INTERRUPTED"] }, wanted.length)).toEqual(ids(wanted));
        expect(await within({ jobId: alpha.id, status: ["CANCELLED"] }, 0)).toEqual([]);
      });

      it("narrows to [from, to) on the creation time", async () => {
        const from = minutes(1005);
        const to = minutes(1012);
        const wanted = [...alphaRuns, ...betaRuns].filter((r) => r.createdAt >= from && r.createdAt < to);
        expect(wanted.length).toBe(14);
        expect(await within({ from: from.toISOString(), to: to.toISOString() }, wanted.length)).toEqual(ids(wanted));
      });

      it("refuses a `to` before `from` with BAD_USER_INPUT on filter.to", async () => {
        expectError(
          await server.graphql(RUNS, { filter: { from: minutes(10).toISOString(), to: minutes(5).toISOString() } }, token),
          "BAD_USER_INPUT",
          "filter.to",
        );
      });

      it("finds runs by their job's name, ignoring case, and by their error", async () => {
        expect(await within({ search: "alpha" }, 25)).toEqual(ids(alphaRuns));
        expect(await within({ search: "WEEKLY BETA" }, 12)).toEqual(ids(betaRuns));
        expect(await within({ search: "quota exceeded" }, 1)).toEqual([betaRuns[3].id]);
        expect(await within({ search: "no job has this name" }, 0)).toEqual([]);
      });

      it("narrows to the runs that selected a VM, combined with the other filters", async () => {
        const wanted = alphaRuns.filter((r) => r.vmUuids.includes(vm) && r.status === "SUCCESS");
        expect(wanted.length).toBeGreaterThan(0);
        expect(await within({ vmUuid: vm, status: ["SUCCESS"], search: "alpha" }, wanted.length)).toEqual(ids(wanted));
      });
    });

    it("refuses a garbage cursor with BAD_USER_INPUT on `after`", async () => {
      for (const after of [
        "garbage",
        "!!!",
        Buffer.from('["not a date", 3]').toString("base64url"),
        Buffer.from("{}").toString("base64url"),
      ]) {
        const error = expectError(await server.graphql(RUNS, { first: 10, after }, token), "BAD_USER_INPUT", "after");
        expect(error.message).toMatch(/endCursor/);
      }
      const job = await createJob("Garbage Cursor");
      expectError(await server.graphql(JOB_RUNS, { id: job.id, first: 10, after: "garbage" }, token), "BAD_USER_INPUT", "after");
    });

    it("refuses first above 500 or below 0 with BAD_USER_INPUT on `first`", async () => {
      for (const first of [501, 100_000, -1]) {
        const error = expectError(await server.graphql(RUNS, { first }, token), "BAD_USER_INPUT", "first");
        expect(error.message).toMatch(/500/);
      }
      expectData(await server.graphql(RUNS, { first: 500 }, token));
    });
  });

  describe("restore points", () => {
    let remote: { id: string };
    let job: { id: string };
    const vmA = randomUUID();
    const vmB = randomUUID();
    const KINDS: RestorePointKind[] = ["XVA", "VHD_CHAIN", "SNAPSHOT"];

    async function insertPoints(count: number, offset: number, extra: (i: number) => object = () => ({})) {
      const rows = Array.from({ length: count }, (_, i) => ({
        id: randomUUID(),
        kind: KINDS[i % KINDS.length],
        vmUuid: i % 2 === 0 ? vmA : vmB,
        vmName: i % 2 === 0 ? "vm a" : "vm b",
        timestamp: minutes(offset + Math.min(i, 20)),
        ...extra(i),
      }));
      await db.restorePoint.createMany({ data: rows });
      return rows;
    }

    beforeAll(async () => {
      remote = await db.remote.create({ data: { name: `remote-${randomUUID()}`, kind: "LOCAL", location: "/tmp/nowhere" } });
      job = await createJob("Restore Point Job");
    });

    it("pages through 25 restore points ten at a time, newest first, then stays stable as newer ones arrive", async () => {
      const rows = await insertPoints(25, 5000, (i) => ({ remoteId: remote.id, path: `/xo-vm-backups/${i}.json` }));
      const order = newestFirst(rows, (r) => r.timestamp);
      const seen = await pageThrough(RESTORE_POINTS, { filter: { remoteId: remote.id } }, (d) => d.restorePoints, 25);
      expect(seen).toEqual(order);

      const first = await page(RESTORE_POINTS, { filter: { remoteId: remote.id }, first: 10 }, (d) => d.restorePoints);
      await insertPoints(4, 9000, (i) => ({ remoteId: remote.id, path: `/newer/${i}.json` }));
      const second = await page(
        RESTORE_POINTS,
        { filter: { remoteId: remote.id }, first: 10, after: first.pageInfo.endCursor },
        (d) => d.restorePoints,
      );
      expect(second.nodes.map((n) => n.id)).toEqual(order.slice(10, 20));
      expect(second.totalCount).toBe(29);
      expect(second.pageInfo.hasNextPage).toBe(true);
    });

    it("narrows by VM, remote, job, kind and [from, to)", async () => {
      const rows = await insertPoints(18, 20000, (i) => ({ jobId: i < 9 ? job.id : null }));
      const byJob = rows.slice(0, 9);
      const count = async (filter: object) =>
        (await pageThrough(RESTORE_POINTS, { filter }, (d) => d.restorePoints, await total(filter), 4)).sort();
      const total = async (filter: object) => (await page(RESTORE_POINTS, { filter, first: 0 }, (d) => d.restorePoints)).totalCount;

      expect(await count({ jobId: job.id })).toEqual(byJob.map((r) => r.id).sort());
      expect(await count({ jobId: job.id, vmUuid: vmA })).toEqual(
        byJob
          .filter((r) => r.vmUuid === vmA)
          .map((r) => r.id)
          .sort(),
      );
      expect(await count({ jobId: job.id, kind: "SNAPSHOT" })).toEqual(
        byJob
          .filter((r) => r.kind === "SNAPSHOT")
          .map((r) => r.id)
          .sort(),
      );
      const from = minutes(20003);
      const to = minutes(20010);
      const inRange = rows.filter((r) => r.timestamp >= from && r.timestamp < to);
      expect(inRange.length).toBe(7);
      expect(await count({ from: from.toISOString(), to: to.toISOString() })).toEqual(inRange.map((r) => r.id).sort());
      // A filter naming a remote that does not exist is a mistake to report, as every unknown id is.
      expectError(await server.graphql(RESTORE_POINTS, { filter: { remoteId: randomUUID() }, first: 0 }, token), "NOT_FOUND");
      expect(await total({ vmUuid: randomUUID() })).toBe(0);
    });

    it("refuses a garbage cursor and first above 500 with BAD_USER_INPUT", async () => {
      expectError(await server.graphql(RESTORE_POINTS, { first: 10, after: "garbage" }, token), "BAD_USER_INPUT", "after");
      expectError(await server.graphql(RESTORE_POINTS, { first: 501 }, token), "BAD_USER_INPUT", "first");
    });
  });
});
