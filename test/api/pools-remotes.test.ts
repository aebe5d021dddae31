import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { startLab, type RunningLab } from "../../server/lab/index.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";
import { settleAll, stopAll } from "../support/stop-all.js";
import { graphql } from "../support/graphql.js";

const CONNECT_POOL = graphql(
  "mutation($input: PoolInput!) { connectPool(input: $input) { id name status lastError hosts { name } vms { name } } }",
);
const CREATE_REMOTE = graphql(
  "mutation($input: RemoteInput!) { createRemote(input: $input) { id name kind location status lastTest { ok } freeBytes } }",
);
const TEST_REMOTE = graphql("mutation($id: ID!) { testRemote(id: $id) { ok writeBytesPerSecond readBytesPerSecond error testedAt } }");
const REMOTE = graphql(
  "query($id: ID!) { remote(id: $id) { id status freeBytes usedBytes restorePointCount lastTest { ok writeBytesPerSecond readBytesPerSecond error testedAt } } }",
);

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("pools and remotes", () => {
  let server: TestCairn;
  let db: Db;
  let admin: string;
  let tempRoot: string;
  /** A second lab pool, not connected to Cairn: a pool is connected once, so connecting tests need one Cairn does not hold. */
  let spare: RunningLab;

  beforeAll(async () => {
    await settleAll([
      startTestCairn({ lab: true }).then((started) => (server = started)),
      // Its real path: a LOCAL remote is stored as the real folder (os.tmpdir() may be a link, as /tmp on macOS).
      fs
        .mkdtemp(path.join(os.tmpdir(), "cairn-api-remotes-"))
        .then((dir) => fs.realpath(dir))
        .then((dir) => (tempRoot = dir)),
    ]);
    spare = await startLab({
      dir: path.join(tempRoot, "spare-lab"),
      port: 0,
      poolName: "spare",
      seed: "spare",
      diskSizeBytes: 8 * 1024 * 1024,
    });
    db = openDatabase(server);
    admin = await server.login();
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
      () => spare?.stop(),
      () => tempRoot && fs.rm(tempRoot, { recursive: true, force: true }),
    ),
  );

  const lab = () => server.cairn.labs[0];

  describe("the lab pool", () => {
    it("is CONNECTED with its host, its SRs and their space, and its VMs with tags and power states", async () => {
      const { pools } = expectData(
        await server.graphql(
          graphql(
            "{ pools { id name url username status lastError connectedAt hosts { uuid name address } srs { uuid name type contentType freeBytes sizeBytes pool { name } } vms { uuid name powerState tags pool { name } } } }",
          ),
          {},
          admin,
        ),
      );
      expect(pools).toHaveLength(1);
      const [pool] = pools;
      expect(pool).toMatchObject({ name: lab().poolName, url: lab().url, username: lab().user, status: "CONNECTED", lastError: null });
      expect(pool.connectedAt).not.toBeNull();
      expect(pool.hosts).toHaveLength(1);
      expect(pool.hosts[0].name).toMatch(/host/);
      expect(pool.hosts[0].uuid).toMatch(/^[0-9a-f-]{36}$/);

      expect(pool.srs.map((sr: any) => sr.name).sort()).toEqual(["ISO library", "Local storage", "Second storage"]);
      for (const sr of pool.srs) {
        expect(sr.sizeBytes).toBe(2 ** 41);
        expect(sr.freeBytes).toBeGreaterThan(0);
        expect(sr.freeBytes).toBeLessThanOrEqual(sr.sizeBytes);
        expect(sr.pool?.name).toBe(lab().poolName);
      }
      expect(pool.srs.find((sr: any) => sr.name === "ISO library")).toMatchObject({ type: "iso", contentType: "iso" });

      const vms = Object.fromEntries(pool.vms.map((vm: any) => [vm.name, vm]));
      expect(Object.keys(vms).sort()).toEqual(["db-data", "scratch", "web-ext4", "win-fat"]);
      expect(vms["web-ext4"]).toMatchObject({ powerState: "Running", tags: ["prod", "web"], pool: { name: lab().poolName } });
      expect(vms["win-fat"]).toMatchObject({ powerState: "Halted", tags: ["test", "windows"] });
      expect(vms["db-data"]).toMatchObject({ powerState: "Paused", tags: ["prod", "db"] });
      expect(vms.scratch).toMatchObject({ powerState: "Suspended", tags: ["cairn:no-bak"] });
    });

    it("finds VMs by name (ignoring case) or uuid, and by tags that must all match", async () => {
      const names = async (variables: Record<string, unknown>) =>
        expectData(
          await server.graphql(
            graphql(
              "query($search: String, $tags: [String!], $poolId: ID) { vms(search: $search, tags: $tags, poolId: $poolId) { uuid name } }",
            ),
            variables,
            admin,
          ),
        ).vms.map((vm: any) => vm.name);
      expect(await names({ search: "EXT4" })).toEqual(["web-ext4"]);
      expect(await names({ search: "-" })).toEqual(["db-data", "web-ext4", "win-fat"]);
      expect(await names({ tags: ["prod"] })).toEqual(["db-data", "web-ext4"]);
      expect(await names({ tags: ["prod", "db"] })).toEqual(["db-data"]);
      expect(await names({ tags: ["prod", "windows"] })).toEqual([]);
      expect(await names({ search: "win", tags: ["test"] })).toEqual(["win-fat"]);
      expect(await names({ search: "no such vm" })).toEqual([]);
      const all = expectData(await server.graphql(graphql("{ pools { id } vms { uuid name } }"), {}, admin));
      const scratch = all.vms.find((vm) => vm.name === "scratch")!;
      expect(await names({ search: scratch.uuid })).toEqual(["scratch"]);
      expect(await names({ poolId: all.pools[0].id })).toHaveLength(4);
      // An unknown pool is NOT_FOUND, as everywhere else.
      expectError(
        await server.graphql("query($poolId: ID) { vms(poolId: $poolId) { uuid } }", { poolId: randomUUID() }, admin),
        "NOT_FOUND",
      );
    });

    it("lists the SRs of every pool, or of one", async () => {
      const { pools } = expectData(await server.graphql(graphql("{ pools { id } }"), {}, admin));
      const srs = async (poolId?: string) =>
        expectData(await server.graphql(graphql("query($poolId: ID) { srs(poolId: $poolId) { name } }"), { poolId }, admin)).srs;
      expect(await srs()).toHaveLength(3);
      expect(await srs(pools[0].id)).toHaveLength(3);
      expectError(
        await server.graphql("query($poolId: ID) { srs(poolId: $poolId) { name } }", { poolId: randomUUID() }, admin),
        "NOT_FOUND",
      );
    });
  });

  describe("connectPool and removePool", () => {
    it("refuses a wrong password with BAD_USER_INPUT on input.password, and saves nothing", async () => {
      const before = await db.pool.count();
      const error = expectError(
        await server.graphql(
          CONNECT_POOL,
          { input: { name: "wrong password", url: spare.url, username: spare.user, password: "not-the-password" } },
          admin,
        ),
        "BAD_USER_INPUT",
        "input.password",
      );
      expect(error.message).toMatch(/refused this user name and password/);
      expect(await db.pool.count()).toBe(before);
      expect(expectData(await server.graphql(graphql("{ pools { name } }"), {}, admin)).pools.map((p: any) => p.name)).not.toContain(
        "wrong password",
      );
    });

    it("refuses an unreachable pool (a closed port) with UNAVAILABLE naming the URL, and saves nothing", async () => {
      const before = await db.pool.count();
      const url = `http://127.0.0.1:${await closedPort()}`;
      const error = expectError(
        await server.graphql(CONNECT_POOL, { input: { name: "unreachable", url, username: "root", password: "pw" } }, admin),
        "UNAVAILABLE",
      );
      expect(error.message).toContain(url);
      expect(await db.pool.count()).toBe(before);
    });

    it("refuses to connect the lab a second time under another name (CONFLICT naming the pool), saving nothing", async () => {
      const before = await db.pool.count();
      const error = expectError(
        await server.graphql(
          CONNECT_POOL,
          { input: { name: "lab twice", url: `${lab().url}/`, username: lab().user, password: lab().password } },
          admin,
        ),
        "CONFLICT",
      );
      expect(error.message).toContain(`Pool ${lab().poolName} is already connected at this address`);
      expect(await db.pool.count()).toBe(before);
    });

    it("connects a second pool, then removePool forgets it and its VMs", async () => {
      const connected = expectData(
        await server.graphql(
          CONNECT_POOL,
          { input: { name: "second pool", url: spare.url, username: spare.user, password: spare.password } },
          admin,
        ),
      ).connectPool;
      expect(connected).toMatchObject({ name: "second pool", status: "CONNECTED", lastError: null });
      expect(connected.vms).toHaveLength(4);
      expect(expectData(await server.graphql(graphql("{ vms { name } }"), {}, admin)).vms).toHaveLength(8);

      expect(
        expectData(await server.graphql(graphql("mutation($id: ID!) { removePool(id: $id) }"), { id: connected.id }, admin)).removePool,
      ).toBe(true);
      const after = expectData(await server.graphql(graphql("{ pools { id name } vms { name } }"), {}, admin));
      expect(after.pools.map((p: any) => p.name)).toEqual([lab().poolName]);
      expect(after.vms).toHaveLength(4);
      expect(await db.pool.findUnique({ where: { id: connected.id } })).toBeNull();
      expectError(await server.graphql("mutation($id: ID!) { removePool(id: $id) }", { id: connected.id }, admin), "NOT_FOUND");
    });
  });

  describe("remotes", () => {
    async function folder(name: string): Promise<string> {
      const dir = path.join(tempRoot, `${name}-${randomUUID()}`);
      await fs.mkdir(dir);
      return dir;
    }

    it("creates a LOCAL remote on a folder, UNTESTED until testRemote writes, reads back and times a file", async () => {
      const location = await folder("tested");
      const created = expectData(
        await server.graphql(CREATE_REMOTE, { input: { name: "tested", kind: "LOCAL", location } }, admin),
      ).createRemote;
      expect(created).toMatchObject({ name: "tested", kind: "LOCAL", location, status: "UNTESTED", lastTest: null, freeBytes: null });

      const before = Date.now();
      const test = expectData(await server.graphql(TEST_REMOTE, { id: created.id }, admin)).testRemote;
      expect(test.ok).toBe(true);
      expect(test.error).toBeNull();
      expect(test.writeBytesPerSecond).toBeGreaterThan(0);
      expect(test.readBytesPerSecond).toBeGreaterThan(0);
      expect(Date.parse(test.testedAt)).toBeGreaterThanOrEqual(before - 1000);

      const remote = expectData(await server.graphql(REMOTE, { id: created.id }, admin)).remote!;
      expect(remote).toMatchObject({ status: "OK", restorePointCount: 0, lastTest: test });
      expect(remote.freeBytes).toBeGreaterThan(0);
      expect(await fs.readdir(location)).toEqual([]);
    });

    it("reports ok false with an error once the remote's folder is deleted, and shows the remote as ERROR", async () => {
      const location = await folder("vanishing");
      const created = expectData(
        await server.graphql(CREATE_REMOTE, { input: { name: "vanishing", kind: "LOCAL", location } }, admin),
      ).createRemote;
      await fs.rm(location, { recursive: true });

      const test = expectData(await server.graphql(TEST_REMOTE, { id: created.id }, admin)).testRemote;
      expect(test.ok).toBe(false);
      expect(test.error).toEqual(expect.any(String));
      expect(test.error!.length).toBeGreaterThan(10);
      expect(test.writeBytesPerSecond).toBe(0);
      expect(await fs.stat(location).catch(() => null)).toBeNull();

      const remote = expectData(await server.graphql(REMOTE, { id: created.id }, admin)).remote!;
      expect(remote.status).toBe("ERROR");
      expect(remote.lastTest).toMatchObject({ ok: false, error: test.error });
    });

    it("refuses a LOCAL remote on a folder that does not exist with UNAVAILABLE saying to create it, and saves nothing", async () => {
      const location = path.join(tempRoot, `missing-${randomUUID()}`);
      const result = await server.graphql(CREATE_REMOTE, { input: { name: "missing folder", kind: "LOCAL", location } }, admin);
      // A missing folder may be a share not mounted yet: the remote is unavailable, and the message says what to do.
      const error = expectError(result, "UNAVAILABLE");
      expect(error.message).toMatch(/create the folder/);
      expect(await db.remote.count({ where: { name: "missing folder" } })).toBe(0);
    });

    it("refuses removeRemote with CONFLICT while a job targets it, then removes it once the job is gone", async () => {
      const location = await folder("targeted");
      const remote = expectData(
        await server.graphql(CREATE_REMOTE, { input: { name: "targeted", kind: "LOCAL", location } }, admin),
      ).createRemote;
      const job = expectData(
        await server.graphql(
          graphql("mutation($input: JobInput!) { createJob(input: $input) { id } }"),
          {
            input: {
              name: "uses targeted",
              mode: "DELTA",
              selection: { smart: { tagsAll: ["prod"] } },
              remoteIds: [remote.id],
              schedules: [{ cron: "0 3 * * *", exportRetention: 5 }],
            },
          },
          admin,
        ),
      ).createJob;

      const error = expectError(await server.graphql("mutation($id: ID!) { removeRemote(id: $id) }", { id: remote.id }, admin), "CONFLICT");
      expect(error.message).toContain("uses targeted");
      expect(await db.remote.findUnique({ where: { id: remote.id } })).not.toBeNull();

      expect(expectData(await server.graphql(graphql("mutation($id: ID!) { removeJob(id: $id) }"), { id: job.id }, admin)).removeJob).toBe(
        true,
      );
      expect(
        expectData(await server.graphql(graphql("mutation($id: ID!) { removeRemote(id: $id) }"), { id: remote.id }, admin)).removeRemote,
      ).toBe(true);
      expect(await db.remote.findUnique({ where: { id: remote.id } })).toBeNull();
      // The remote's files stay where they are.
      expect((await fs.stat(location)).isDirectory()).toBe(true);
    });

    it("updates a remote's name and location, and disables it", async () => {
      const first = await folder("moved-from");
      const second = await folder("moved-to");
      const remote = expectData(
        await server.graphql(CREATE_REMOTE, { input: { name: "to move", kind: "LOCAL", location: first } }, admin),
      ).createRemote;
      const updated = expectData(
        await server.graphql(
          graphql("mutation($id: ID!, $input: RemoteInput!) { updateRemote(id: $id, input: $input) { name location enabled status } }"),
          { id: remote.id, input: { name: "moved", kind: "LOCAL", location: second, enabled: false } },
          admin,
        ),
      ).updateRemote;
      expect(updated).toEqual({ name: "moved", location: second, enabled: false, status: "DISABLED" });
    });
  });
});
