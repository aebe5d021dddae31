/**
 * runs(filter: { search }) finds a run by what a person remembers of it: its job, a VM, its kind ("restore", "health
 * check"), its status ("failed"), its own error, and any of its tasks' messages (a transfer's "NO_SPACE ... ENOSPC" that the
 * run's error only counts), as they are now; wildcards in the search are plain characters. Seeded straight into Postgres.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient } from "../../server/db/prisma.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";

const VM = "eeeeeeee-0000-4000-8000-000000000001";

describe("runs(filter: { search })", () => {
  let server: TestCairn;
  let token: string;
  let db: ReturnType<typeof createPrismaClient>;
  const ids: Record<string, string> = {};
  const at = (minutes: number) => new Date(Date.UTC(2026, 10, 20, 10, minutes));
  const run = async (name: string, data: Record<string, unknown>) => {
    ids[name] = (await db.run.create({ data: { trigger: "MANUAL", createdAt: at(Object.keys(ids).length), ...data } as never })).id;
  };

  const search = async (text: string) => {
    const result = await server.graphql<{ runs: { totalCount: number; nodes: { id: string }[] } }>(
      `query($search: String) { runs(filter: { search: $search }, first: 50) { totalCount nodes { id } } }`,
      { search: text },
      token,
    );
    expect(result.errors).toBeUndefined();
    const found = result.data!.runs.nodes.map((n) => Object.entries(ids).find(([, id]) => id === n.id)?.[0] ?? n.id).sort();
    expect(result.data!.runs.totalCount).toBe(found.length);
    return found;
  };

  beforeAll(async () => {
    server = await startTestCairn();
    token = await server.login();
    db = createPrismaClient(server.database.url);
    const pool = await db.pool.create({ data: { name: "search pool", url: "http://192.0.2.1", username: "root", passwordSealed: "x" } });
    await db.vmInventory.create({ data: { uuid: VM, poolId: pool.id, name: "billing-db", tags: [], powerState: "Running" } });
    const job = await db.job.create({ data: { name: "nightly", mode: "DELTA", selection: { vmUuids: [VM] }, srUuids: [], settings: {} } });
    await run("ok", { jobId: job.id, status: "SUCCESS", vmUuids: [VM] });
    await run("full", { jobId: job.id, status: "FAILURE", vmUuids: [], error: "1 of 1 VMs failed." });
    await db.task.create({
      data: {
        runId: ids.full,
        position: 0,
        kind: "transfer",
        name: "Export to nas",
        status: "FAILURE",
        message: 'NO_SPACE: could not write "xo-vm-backups/x.vhd" on nas: ENOSPC no space left on device; free some space',
      },
    });
    await run("restore", { kind: "RESTORE", status: "SUCCESS" });
    await run("check", { kind: "HEALTH_CHECK", status: "SUCCESS" });
    await run("percent", { kind: "VERIFY", status: "SUCCESS", error: "100% read" });
  }, 120_000);

  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  it("finds a run by a task's error, by its code and by the system's", async () => {
    await expect(search("NO_SPACE")).resolves.toEqual(["full"]);
    await expect(search("enospc")).resolves.toEqual(["full"]);
  });

  it("finds runs by kind, in the words people use", async () => {
    await expect(search("restore")).resolves.toEqual(["restore"]);
    await expect(search("health check")).resolves.toEqual(["check"]);
    await expect(search("health-check")).resolves.toEqual(["check"]);
    await expect(search("verify")).resolves.toEqual(["percent"]);
  });

  it("finds runs by status", async () => {
    await expect(search("failed")).resolves.toEqual(["full"]);
    await expect(search("FAILURE")).resolves.toEqual(["full"]);
  });

  it("still finds runs by job and VM name, and takes wildcards literally", async () => {
    await expect(search("nightly")).resolves.toEqual(["full", "ok"]);
    await expect(search("billing")).resolves.toEqual(["ok"]);
    await expect(search("0%")).resolves.toEqual(["percent"]);
    await expect(search("x_vhd")).resolves.toEqual([]);
    await expect(search("1_of")).resolves.toEqual([]);
    await expect(search("night%")).resolves.toEqual([]);
  });

  it("finds a run by the message its task has now, whoever wrote it and however often it changed", async () => {
    await run("waiting", { status: "RUNNING" });
    const task = await db.task.create({ data: { runId: ids.waiting, position: 0, kind: "vm", name: "VM billing-db" } });
    await expect(search("lock held")).resolves.toEqual([]);

    await db.task.update({ where: { id: task.id }, data: { message: "waiting: the lock held by run 42" } });
    await expect(search("lock held")).resolves.toEqual(["waiting"]);
    await db.task.update({ where: { id: task.id }, data: { message: "waiting: the chain is being merged" } });
    await expect(search("lock held")).resolves.toEqual([]);
    await expect(search("being merged")).resolves.toEqual(["waiting"]);
    await db.task.update({ where: { id: task.id }, data: { message: null } });
    await expect(search("being merged")).resolves.toEqual([]);
  });

  it("keeps the messages of two transactions changing tasks of one run at the same time", async () => {
    await run("busy", { status: "RUNNING" });
    const [first, second] = await Promise.all(
      [0, 1].map((position) => db.task.create({ data: { runId: ids.busy, position, kind: "vm", name: `VM ${position}` } })),
    );
    const [one, two] = [new pg.Client({ connectionString: server.database.url }), new pg.Client({ connectionString: server.database.url })];
    await Promise.all([one.connect(), two.connect()]);
    try {
      // The first writes its run's copy now and holds the run's row until it commits; the second commits meanwhile: its
      // copy waits for the run's row, then must read the first's message, committed by then.
      await one.query("BEGIN");
      await one.query(`UPDATE "Task" SET message = 'ECONNREFUSED on host one' WHERE id = $1`, [first.id]);
      await one.query(`SET CONSTRAINTS "Task_message_updated" IMMEDIATE`);
      await two.query("BEGIN");
      await two.query(`UPDATE "Task" SET message = 'ETIMEDOUT on host two' WHERE id = $1`, [second.id]);
      const { rows } = await two.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      const committed = two.query("COMMIT");
      await waitUntilBlocked(rows[0].pid);
      await one.query("COMMIT");
      await committed;
    } finally {
      await Promise.all([one.end(), two.end()]);
    }
    await expect(search("ECONNREFUSED")).resolves.toEqual(["busy"]);
    await expect(search("ETIMEDOUT")).resolves.toEqual(["busy"]);
  });

  /** Until the backend `pid` waits for a lock (no time limit of its own: the test's timeout bounds it). */
  async function waitUntilBlocked(pid: number) {
    for (;;) {
      const [row] = await db.$queryRaw<{ waiting: boolean }[]>`
        SELECT wait_event_type = 'Lock' AS waiting FROM pg_stat_activity WHERE pid = ${pid}`;
      if (row?.waiting) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
});
