/**
 * runs(filter: { search }) finds a run by what a person remembers of it: its job, a VM, its kind ("restore", "health
 * check"), its status ("failed"), its own error, and any of its tasks' messages (a transfer's "NO_SPACE ... ENOSPC" that the
 * run's error only counts); wildcards in the search are plain characters. Seeded straight into Postgres.
 */
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
    const at = (minutes: number) => new Date(Date.UTC(2026, 10, 20, 10, minutes));
    const run = async (name: string, data: Record<string, unknown>) => {
      ids[name] = (await db.run.create({ data: { trigger: "MANUAL", createdAt: at(Object.keys(ids).length), ...data } as never })).id;
    };
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
  });
});
