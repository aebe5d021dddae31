/**
 * Issue 10, finding 5 and parts of finding 8, against a real server with the lab: schedules never fire more than once a
 * minute (whatever the cron syntax) nor never; a job has at most MAX_SCHEDULES_PER_JOB schedules; a LOCAL remote is stored
 * as the real folder it names; a pool cannot be connected twice; unknown ids are NOT_FOUND everywhere, subscriptions
 * included; a report webhook is write-only and never reaches this machine or the link-local network (as typed, and as its
 * name resolves when sending) unless REPORT_WEBHOOK_ALLOW_PRIVATE=true.
 */
import { randomUUID } from "node:crypto";
import { lookup } from "node:dns/promises";
import fs from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCairn } from "../../server/app.js";
import { loadConfig } from "../../server/config.js";
import type { Db } from "../../server/db/prisma.js";
import { cronProblem, MAX_SCHEDULES_PER_JOB, MIN_SCHEDULE_INTERVAL_SECONDS } from "../../server/domain/schedule.js";
import { refusedAddressKind } from "../../server/domain/webhook-target.js";
import { createTestDatabase } from "../support/database.js";
import { eventually } from "../support/eventually.js";
import { startTestCairn, createUser, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { startWebhookPeer, type WebhookPeer } from "../reports/report-peers.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";
import { openSocket, runOverSocket } from "./graphql-ws-client.js";

type Input = Record<string, any>;

const CREATE_JOB = "mutation($input: JobInput!) { createJob(input: $input) { id schedules { id cron nextRunAt } } }";
const UPDATE_JOB = "mutation($id: ID!, $input: JobInput!) { updateJob(id: $id, input: $input) { id } }";
const JOB_WEBHOOK = "query($id: ID!) { job(id: $id) { settings { reportWebhookUrl reportWebhookHost } } }";
const CONNECT_POOL = "mutation($input: PoolInput!) { connectPool(input: $input) { id name url } }";
const UPDATE_POOL = "mutation($id: ID!, $input: PoolInput!) { updatePool(id: $id, input: $input) { id url } }";
const CREATE_REMOTE = "mutation($input: RemoteInput!) { createRemote(input: $input) { id location } }";
const UPDATE_REMOTE = "mutation($id: ID!, $input: RemoteInput!) { updateRemote(id: $id, input: $input) { id location } }";

describe("schedules, remotes, pools, ids and webhooks at the API's edge", () => {
  let server: TestCairn;
  let db: Db;
  let admin: string;
  let viewer: string;
  let remoteId: string;
  let vmUuid: string;
  let hooks: WebhookPeer;
  const scratch: string[] = [];

  beforeAll(async () => {
    hooks = await startWebhookPeer();
    server = await startTestCairn({ lab: true, labPools: 2 });
    db = openDatabase(server);
    admin = await server.login();
    viewer = await createUser(server, "viewer-edges", "VIEWER");
    const data = expectData(await server.graphql<any>("{ vms { uuid name } remotes { id } }", {}, admin));
    vmUuid = data.vms.find((vm: { name: string }) => vm.name === "web-ext4").uuid;
    remoteId = data.remotes[0].id;
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
      () => hooks?.stop(),
      ...scratch.map((dir) => () => fs.rm(dir, { recursive: true, force: true })),
    ),
  );

  function job(overrides: Input = {}, schedule: Input = {}): Input {
    return {
      name: `edges-${randomUUID()}`,
      mode: "FULL",
      selection: { vmUuids: [vmUuid] },
      remoteIds: [remoteId],
      schedules: [{ cron: "0 2 * * *", exportRetention: 1, ...schedule }],
      ...overrides,
    };
  }

  describe("schedules (finding 5)", () => {
    const tooOften: [string, string][] = [
      ["7 fields, every second (the 35 runs in 30 s of the finding)", "* * * * * * *"],
      ["7 fields, every second of one year", "* * * * * * 2099"],
      ["6 fields, every second", "* * * * * *"],
      ["6 fields, every 5 seconds", "*/5 * * * * *"],
      ["6 fields, at seconds 0 and 30", "0,30 * * * * *"],
      ["6 fields, seconds 0-59", "0-59 * * * * *"],
      ["6 fields, seconds as ?", "? * * * * *"],
    ];
    it.each(tooOften)("refuses a cron that fires more than once a minute: %s", async (_what, cron) => {
      const error = expectError(
        await server.graphql(CREATE_JOB, { input: job({}, { cron }) }, admin),
        "BAD_USER_INPUT",
        "input.schedules.0.cron",
      );
      expect(error.message).toMatch(/more than once a minute/);
      // The message says which forms are accepted.
      expect(error.message).toMatch(/5 fields "minute hour day month weekday".*6 fields.*7 fields.*@daily/);
    });

    it("refuses a cron that never fires, and one whose year has passed, saying so", async () => {
      for (const cron of ["0 0 31 2 *", "0 0 30 2 *", "0 0 0 1 1 * 2020"]) {
        const error = expectError(
          await server.graphql(CREATE_JOB, { input: job({}, { cron }) }, admin),
          "BAD_USER_INPUT",
          "input.schedules.0.cron",
        );
        expect(error.message).toMatch(/never fires/);
      }
    });

    it("refuses nicknames croner does not schedule, and names the accepted forms", async () => {
      for (const cron of ["@every 1s", "@reboot", "* * * * * * * *"]) {
        const error = expectError(
          await server.graphql(CREATE_JOB, { input: job({}, { cron }) }, admin),
          "BAD_USER_INPUT",
          "input.schedules.0.cron",
        );
        expect(error.message).toMatch(/not a valid cron expression.*accepted: 5 fields/);
      }
    });

    it("names the schedule at fault, and refuses the same on updateJob", async () => {
      const input = job();
      input.schedules.push({ cron: "0 3 * * *", exportRetention: 1 }, { cron: "* * * * * * *", exportRetention: 1 });
      expectError(await server.graphql(CREATE_JOB, { input }, admin), "BAD_USER_INPUT", "input.schedules.2.cron");
      const created = expectData(await server.graphql<any>(CREATE_JOB, { input: job() }, admin)).createJob;
      const update = job({}, { cron: "*/10 * * * * *" });
      expectError(await server.graphql(UPDATE_JOB, { id: created.id, input: update }, admin), "BAD_USER_INPUT", "input.schedules.0.cron");
      expect((await db.schedule.findMany({ where: { jobId: created.id } })).map((s) => s.cron)).toEqual(["0 2 * * *"]);
    });

    it("accepts every once-a-minute-or-less form: 5 fields, 6 and 7 with a fixed second, nicknames", async () => {
      const crons = ["* * * * *", "0 2 * * *", "30 0 2 * * *", "0 0 2 * * * 2099", "@daily", "@hourly", "0 0 29 2 *", "0 0 L * *"];
      const input = job({}, {});
      input.schedules = crons.map((cron) => ({ cron, exportRetention: 1 }));
      const created = expectData(await server.graphql<any>(CREATE_JOB, { input }, admin)).createJob;
      expect(created.schedules.map((s: { cron: string }) => s.cron)).toEqual(crons);
      for (const schedule of created.schedules) expect(schedule.nextRunAt).toBeTruthy();
    });

    it("keeps accepted crons at least a minute apart over their next fire times, in zones with daylight saving", () => {
      // The sampled check behind the structural one: any cron accepted fires at least MIN_SCHEDULE_INTERVAL_SECONDS apart.
      const from = new Date("2026-03-29T00:00:00Z"); // the night Europe/Paris moves to summer time
      for (const zone of ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "UTC"]) {
        for (const cron of ["* * * * *", "59 * * * * *", "30 2 * * *", "0 30 2 * * *"]) expect(cronProblem(cron, zone, from)).toBeNull();
        expect(cronProblem("*/30 * * * * *", zone, from)).toMatch(/once a minute/);
      }
      expect(MIN_SCHEDULE_INTERVAL_SECONDS).toBe(60);
    });

    it(`caps the schedules of a job at ${MAX_SCHEDULES_PER_JOB}, naming the limit`, async () => {
      const many = (n: number) => Array.from({ length: n }, (_, i) => ({ cron: `${i} 2 * * *`, exportRetention: 1 }));
      const error = expectError(
        await server.graphql(CREATE_JOB, { input: { ...job(), schedules: many(MAX_SCHEDULES_PER_JOB + 1) } }, admin),
        "BAD_USER_INPUT",
        "input.schedules",
      );
      expect(error.message).toContain(`at most ${MAX_SCHEDULES_PER_JOB} schedules`);
      const created = expectData(
        await server.graphql<any>(CREATE_JOB, { input: { ...job(), schedules: many(MAX_SCHEDULES_PER_JOB) } }, admin),
      );
      expect(created.createJob.schedules).toHaveLength(MAX_SCHEDULES_PER_JOB);
    });
  });

  describe("LOCAL remotes are stored as the real folder they name", () => {
    let base: string;
    beforeAll(async () => {
      // Real path of the scratch folder itself: tmpdir() may be a link (macOS: /tmp -> /private/tmp).
      base = await fs.realpath(await fs.mkdtemp(path.join(tmpdir(), "cairn-edges-")));
      scratch.push(base);
      await fs.chmod(base, 0o755);
      await fs.mkdir(path.join(base, "real", "backups"), { recursive: true });
      await fs.mkdir(path.join(base, "elsewhere"), { recursive: true });
      await fs.symlink(path.join(base, "elsewhere"), path.join(base, "link"));
    });

    it("resolves . and .. and shows the resolved path", async () => {
      const location = `${base}/real/x/../../real/./backups/`;
      const created = expectData(
        await server.graphql<any>(CREATE_REMOTE, { input: { name: `dots-${randomUUID()}`, kind: "LOCAL", location } }, admin),
      ).createRemote;
      expect(created.location).toBe(path.join(base, "real", "backups"));
      expect((await db.remote.findUniqueOrThrow({ where: { id: created.id } })).location).toBe(path.join(base, "real", "backups"));
    });

    it("follows a symbolic link to the folder it leads to, on create and on update", async () => {
      const name = `link-${randomUUID()}`;
      const created = expectData(
        await server.graphql<any>(CREATE_REMOTE, { input: { name, kind: "LOCAL", location: path.join(base, "link") } }, admin),
      ).createRemote;
      expect(created.location).toBe(path.join(base, "elsewhere"));
      const updated = expectData(
        await server.graphql<any>(
          UPDATE_REMOTE,
          { id: created.id, input: { name, kind: "LOCAL", location: `${base}/link/../real/backups` } },
          admin,
        ),
      ).updateRemote;
      // `link/..` is lexically `base`, as path.resolve reads it (and as a person reading the path does).
      expect(updated.location).toBe(path.join(base, "real", "backups"));
    });

    it("refuses a relative path with a clear error on the location", async () => {
      for (const location of ["backups", "./backups", "../../etc", "~/backups"]) {
        const error = expectError(
          await server.graphql(CREATE_REMOTE, { input: { name: `rel-${randomUUID()}`, kind: "LOCAL", location } }, admin),
          "BAD_USER_INPUT",
          "input.location",
        );
        expect(error.message).toMatch(/absolute folder path, from the root/);
      }
    });
  });

  describe("a pool is connected once", () => {
    it("refuses the same pool URL again, however it is written, naming the pool already there", async () => {
      const [lab] = server.cairn.labs;
      const existing = (await db.pool.findMany()).find((p) => p.name === lab.poolName)!;
      const url = new URL(lab.url);
      const variants = [lab.url, `${lab.url}/`, `HTTP://${url.host.toUpperCase()}/`, `${url.protocol}//${url.hostname}.:${url.port}//`];
      for (const variant of variants) {
        const input = { name: `twice-${randomUUID()}`, url: variant, username: lab.user, password: lab.password };
        const error = expectError(await server.graphql(CONNECT_POOL, { input }, admin), "CONFLICT");
        expect(error.message).toContain(`Pool ${existing.name} is already connected at this address`);
      }
      expect(await db.pool.count()).toBe(2);
      // The default port written or not is the same address.
      const https = { name: `p-${randomUUID()}`, url: "https://pool.example.net:443/", username: "root", password: "x" };
      await db.pool.create({ data: { name: "stored", url: "https://pool.example.net", username: "root", passwordSealed: "x" } });
      try {
        expect(expectError(await server.graphql(CONNECT_POOL, { input: https }, admin), "CONFLICT").message).toContain("Pool stored");
      } finally {
        await db.pool.deleteMany({ where: { name: "stored" } });
      }
    });

    it("refuses moving a pool onto another pool's address, and accepts a pool keeping its own", async () => {
      const [first, second] = server.cairn.labs;
      const pools = await db.pool.findMany();
      const secondRow = pools.find((p) => p.name === second.poolName)!;
      const onto = { name: second.poolName, url: `${first.url}/`, username: second.user, password: second.password };
      const error = expectError(await server.graphql(UPDATE_POOL, { id: secondRow.id, input: onto }, admin), "CONFLICT");
      expect(error.message).toContain(`Pool ${first.poolName} is already connected at this address`);
      const same = { name: second.poolName, url: `${second.url}/`, username: second.user, password: second.password };
      expectData(await server.graphql(UPDATE_POOL, { id: secondRow.id, input: same }, admin));
      const uuids = expectData(await server.graphql<any>("{ vms { uuid } }", {}, admin)).vms.map((vm: { uuid: string }) => vm.uuid);
      expect(new Set(uuids).size).toBe(uuids.length);
    });
  });

  describe("unknown and malformed ids", () => {
    const unknown = randomUUID();
    const queries: [string, string][] = [
      ["pool", "query($id: ID) { srs(poolId: $id) { uuid } }"],
      ["pool", "query($id: ID) { vms(poolId: $id) { uuid } }"],
      ["pool", "query($id: ID) { vmProtection(poolId: $id) { protected } }"],
      ["job", "query($id: ID) { runs(filter: { jobId: $id }) { totalCount } }"],
      ["job", "query($id: ID) { restorePoints(filter: { jobId: $id }) { totalCount } }"],
      ["remote", "query($id: ID) { restorePoints(filter: { remoteId: $id }) { totalCount } }"],
    ];

    it.each(queries)("answers NOT_FOUND naming the %s for an unknown id: %s", async (what, query) => {
      const error = expectError(await server.graphql(query, { id: unknown }, viewer), "NOT_FOUND");
      expect(error.message).toBe(`No ${what} with id ${unknown}.`);
    });

    it.each(queries)("answers NOT_FOUND for a malformed id too, as every lookup does (%s): %s", async (_what, query) => {
      for (const id of ["junk", "x".repeat(5000)]) {
        const error = expectError(await server.graphql(query, { id }, viewer), "NOT_FOUND");
        expect(error.message.length).toBeLessThan(200);
      }
    });

    it("answers the lists of a known pool (connected or not)", async () => {
      const [pool] = await db.pool.findMany({ orderBy: { name: "asc" } });
      const data = expectData(
        await server.graphql<any>("query($id: ID) { srs(poolId: $id) { uuid } vms(poolId: $id) { uuid } }", { id: pool.id }, viewer),
      );
      expect(data.srs.length).toBeGreaterThan(0);
      expect(data.vms.length).toBeGreaterThan(0);
    });

    it("refuses taskUpdated and runUpdated of an unknown or malformed id before subscribing, over graphql-ws", async () => {
      const socket = openSocket(server.url.replace(/^http/, "ws") + "/graphql", `Bearer ${viewer}`);
      try {
        await socket.connected;
        const cases: [string, Record<string, unknown>, string][] = [
          ["subscription($id: ID!) { taskUpdated(runId: $id) { id } }", { id: "junk" }, "run"],
          ["subscription($id: ID!) { taskUpdated(runId: $id) { id } }", { id: unknown }, "run"],
          ["subscription($id: ID) { runUpdated(jobId: $id) { id } }", { id: "junk" }, "job"],
          ["subscription($id: ID) { runUpdated(jobId: $id) { id } }", { id: unknown }, "job"],
        ];
        for (const [query, variables, what] of cases) {
          const answer = await runOverSocket(socket.client, query, variables);
          expect(answer.errors, JSON.stringify(answer)).toHaveLength(1);
          expect(answer.errors?.[0].extensions?.code).toBe("NOT_FOUND");
          expect(answer.errors?.[0].message).toMatch(new RegExp(`^No ${what} with id `));
        }
      } finally {
        await socket.dispose();
      }
    });
  });

  describe("the report webhook", () => {
    const SECRET = `t0ken-${randomUUID()}`;
    const url = `https://hooks.example.net/services/${SECRET}?key=${SECRET}`;

    async function storedWebhook(id: string): Promise<string | null> {
      const row = await db.job.findUniqueOrThrow({ where: { id } });
      return (row.settings as { reportWebhookUrl?: string | null }).reportWebhookUrl ?? null;
    }

    it("is write-only: everyone reads only its host; an update leaving it out (or sending the redacted form) keeps it", async () => {
      const created = expectData(
        await server.graphql<any>(CREATE_JOB, { input: job({ settings: { reportWebhookUrl: url } }) }, admin),
      ).createJob;
      for (const token of [viewer, admin]) {
        const answer = await server.graphql<any>(JOB_WEBHOOK, { id: created.id }, token);
        expect(expectData(answer).job.settings).toEqual({
          reportWebhookUrl: "https://hooks.example.net/…",
          reportWebhookHost: "hooks.example.net",
        });
        expect(JSON.stringify(answer)).not.toContain(SECRET);
        const listed = await server.graphql<any>("{ jobs { settings { reportWebhookUrl reportWebhookHost } } }", {}, token);
        expect(JSON.stringify(listed)).not.toContain(SECRET);
      }
      // Left out: kept.
      const input = job({ name: `kept-${randomUUID()}`, settings: { reportWhen: "ALWAYS" } });
      expectData(await server.graphql(UPDATE_JOB, { id: created.id, input }, admin));
      expect(await storedWebhook(created.id)).toBe(url);
      // The redacted form read back and sent again: kept, never stored as a URL.
      expectData(
        await server.graphql(
          UPDATE_JOB,
          { id: created.id, input: { ...input, settings: { reportWebhookUrl: "https://hooks.example.net/…" } } },
          admin,
        ),
      );
      expect(await storedWebhook(created.id)).toBe(url);
      // A redacted form that is not this job's: refused, not stored.
      expectError(
        await server.graphql(
          UPDATE_JOB,
          { id: created.id, input: { ...input, settings: { reportWebhookUrl: "https://other.example.net/…" } } },
          admin,
        ),
        "BAD_USER_INPUT",
        "input.settings.reportWebhookUrl",
      );
      // A new URL replaces it; an explicit null removes it.
      const replaced = "https://hooks.example.net/services/other";
      expectData(
        await server.graphql(UPDATE_JOB, { id: created.id, input: { ...input, settings: { reportWebhookUrl: replaced } } }, admin),
      );
      expect(await storedWebhook(created.id)).toBe(replaced);
      expectData(await server.graphql(UPDATE_JOB, { id: created.id, input: { ...input, settings: { reportWebhookUrl: null } } }, admin));
      expect(await storedWebhook(created.id)).toBeNull();
      expect(expectData(await server.graphql<any>(JOB_WEBHOOK, { id: created.id }, viewer)).job.settings).toEqual({
        reportWebhookUrl: null,
        reportWebhookHost: null,
      });
    });

    const refused: [string, string][] = [
      ["loopback", "http://127.0.0.1:8080/hook"],
      ["loopback elsewhere in 127/8", "http://127.8.9.10/hook"],
      ["a short loopback", "http://127.1/hook"],
      ["a decimal loopback", "http://2130706433/hook"],
      ["localhost", "http://localhost:3000/hook"],
      ["a name under localhost", "https://app.localhost./hook"],
      ["IPv6 loopback", "http://[::1]/hook"],
      ["IPv4-mapped IPv6 loopback", "http://[::ffff:127.0.0.1]/hook"],
      ["the cloud metadata address", "http://169.254.169.254/latest/meta-data/"],
      ["link-local", "http://169.254.1.1/"],
      ["IPv6 link-local", "http://[fe80::1]/hook"],
      ["the unspecified address", "http://0.0.0.0:4000/"],
      ["the IPv6 unspecified address", "http://[::]/"],
    ];
    it.each(refused)("refuses a webhook to %s as typed (%s), saying which setting allows it", async (_what, reportWebhookUrl) => {
      const error = expectError(
        await server.graphql(CREATE_JOB, { input: job({ settings: { reportWebhookUrl } }) }, admin),
        "BAD_USER_INPUT",
        "input.settings.reportWebhookUrl",
      );
      expect(error.message).toMatch(/a report webhook may not reach it; set REPORT_WEBHOOK_ALLOW_PRIVATE=true/);
    });

    /** Creates a job whose runs select no VM (they end SKIPPED at once) and reports ALWAYS, runs it, and returns the report. */
    async function reportOfARun(settings: Input, rowSettings?: Input): Promise<{ deliveries: any[] }> {
      const created = expectData(
        await server.graphql<any>(
          CREATE_JOB,
          {
            input: job({ selection: { smart: { tagsAll: [`nothing-${randomUUID()}`] } }, settings: { reportWhen: "ALWAYS", ...settings } }),
          },
          admin,
        ),
      ).createJob;
      if (rowSettings) {
        // As a job stored before the input check existed (or by another build) would be: the send-time check must hold alone.
        const row = await db.job.findUniqueOrThrow({ where: { id: created.id } });
        await db.job.update({ where: { id: created.id }, data: { settings: { ...(row.settings as object), ...rowSettings } } });
      }
      const run = expectData(await server.graphql<any>("mutation($id: ID!) { runJob(id: $id) { id } }", { id: created.id }, admin)).runJob;
      return eventually(`the report of run ${run.id}`, async () => {
        const row = await db.run.findUniqueOrThrow({ where: { id: run.id } });
        const reports = (row.params as { reports?: { deliveries: any[] } } | null)?.reports;
        expect(reports?.deliveries.length).toBeGreaterThan(0);
        return reports!;
      });
    }

    it("refuses at send time a name that resolves to this machine, and the run's report says why", async () => {
      // A name of this machine that is not `localhost` (the input check only reads what is typed): the host name, or the
      // names most /etc/hosts give ::1.
      let name: string | undefined;
      for (const candidate of [hostname(), "ip6-localhost", "ip6-loopback", "localhost.localdomain"]) {
        const addresses = await lookup(candidate, { all: true }).catch(() => []);
        if (addresses.length > 0 && addresses.some((a) => refusedAddressKind(a.address))) {
          name = candidate;
          break;
        }
      }
      expect(name, "this machine has no name resolving to a loopback address besides localhost").toBeDefined();
      const hookPath = `/dns-${randomUUID()}`;
      const port = new URL(hooks.url).port;
      const report = await reportOfARun({ reportWebhookUrl: `http://${name}:${port}${hookPath}` });
      const delivery = report.deliveries.find((d) => d.channel === "webhook");
      expect(delivery).toMatchObject({ ok: false, to: `${name!.toLowerCase()}:${port}` });
      expect(delivery.error).toMatch(/resolves to .*(loopback|unspecified|link-local) address.*REPORT_WEBHOOK_ALLOW_PRIVATE=true/);
      expect(hooks.requests.filter((r) => r.path === hookPath)).toEqual([]);
    });

    it("refuses at send time a stored URL to a loopback address, without a request", async () => {
      const hookPath = `/literal-${randomUUID()}`;
      const report = await reportOfARun({}, { reportWebhookUrl: `${hooks.url}${hookPath}` });
      const delivery = report.deliveries.find((d) => d.channel === "webhook");
      expect(delivery).toMatchObject({ ok: false, attempts: 0 });
      expect(delivery.error).toMatch(/127\.0\.0\.1 is a loopback address.*REPORT_WEBHOOK_ALLOW_PRIVATE=true/);
      expect(hooks.requests.filter((r) => r.path === hookPath)).toEqual([]);
    });
  });
});

describe("the lab pool across restarts", () => {
  it("keeps one pool for the lab when Cairn restarts and the lab's port changes", async () => {
    const database = await createTestDatabase();
    const dataDir = await fs.mkdtemp(path.join(tmpdir(), "cairn-edges-restart-"));
    const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
    const config = loadConfig({
      PORT: "0",
      DATA_DIR: dataDir,
      DATABASE_URL: database.url,
      ADMIN_PASSWORD: "admin-password-for-tests",
      LAB: "on",
      LAB_PORT: "0",
      LAB_POOLS: "1",
      LAB_DISK_MB: "8",
      LOG_LEVEL: "warn",
    });
    const db = (await import("../../server/db/prisma.js")).createPrismaClient(database.url);
    let cairn: Awaited<ReturnType<typeof startCairn>> | undefined;
    try {
      cairn = await startCairn(config, { logDestination: sink });
      const first = await db.pool.findMany();
      expect(first.map((p) => p.url)).toEqual([cairn.labs[0].url]);
      await cairn.stop();
      cairn = undefined;
      // Restarted: same database, the lab on another port (its row is updated, not refused as a second pool).
      cairn = await startCairn(config, { logDestination: sink });
      const second = await db.pool.findMany();
      expect(second).toHaveLength(1);
      expect(second[0]).toMatchObject({ id: first[0].id, url: cairn.labs[0].url });
    } finally {
      await stopAll(
        () => cairn?.stop(),
        () => db.$disconnect(),
        () => database.drop(),
        () => fs.rm(dataDir, { recursive: true, force: true }),
      );
    }
  });
});
