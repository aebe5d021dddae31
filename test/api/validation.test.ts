import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";
import { stopAll } from "../support/stop-all.js";
import { graphql } from "../support/graphql.js";

const JOB_FIELDS =
  "id name mode enabled selection { vmUuids smart { poolIds tagsAll tagsAny tagsNone powerStates } } remotes { id } srUuids settings { compression concurrency timeoutSeconds fullInterval retries quiesce healthCheckSrUuid reportWhen } schedules { id name cron timezone enabled exportRetention copyRetention snapshotRetention nextRunAt }";
const CREATE_JOB = `mutation($input: JobInput!) { createJob(input: $input) { ${JOB_FIELDS} } }`;
const UPDATE_JOB = `mutation($id: ID!, $input: JobInput!) { updateJob(id: $id, input: $input) { ${JOB_FIELDS} } }`;
const CONNECT_POOL = "mutation($input: PoolInput!) { connectPool(input: $input) { id } }";
const CREATE_REMOTE = "mutation($input: RemoteInput!) { createRemote(input: $input) { id } }";

type Input = Record<string, any>;

/** The hour and minute a date shows on a wall clock in a time zone. */
function wallClock(date: Date, timeZone: string): string {
  return new Intl.DateTimeFormat("en-GB", { timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(date);
}

describe("validation of job, schedule, pool and remote inputs", () => {
  let server: TestCairn;
  let db: Db;
  let admin: string;
  let vmUuid: string;
  let secondVmUuid: string;
  let srUuid: string;
  let remoteId: string;
  let poolId: string;

  beforeAll(async () => {
    server = await startTestCairn({ lab: true });
    db = openDatabase(server);
    admin = await server.login();
    const data = expectData(
      await server.graphql(graphql("{ pools { id } vms { uuid name } srs { uuid contentType } remotes { id } }"), {}, admin),
    );
    vmUuid = data.vms.find((vm) => vm.name === "web-ext4")!.uuid;
    secondVmUuid = data.vms.find((vm) => vm.name === "db-data")!.uuid;
    srUuid = data.srs.find((sr) => sr.contentType !== "iso")!.uuid;
    remoteId = data.remotes[0].id;
    poolId = data.pools[0].id;
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  /** A valid FULL job; each case breaks one value of it. */
  function fullJob(name = `job-${randomUUID()}`): Input {
    return {
      name,
      mode: "FULL",
      selection: { vmUuids: [vmUuid] },
      remoteIds: [remoteId],
      settings: { compression: "ZSTD", concurrency: 2 },
      schedules: [{ name: "nightly", cron: "0 2 * * *", timezone: "Europe/Paris", exportRetention: 7 }],
    };
  }

  function drJob(): Input {
    return {
      name: `dr-${randomUUID()}`,
      mode: "DISASTER_RECOVERY",
      selection: { vmUuids: [vmUuid] },
      srUuids: [srUuid],
      schedules: [{ cron: "0 3 * * 0", copyRetention: 2 }],
    };
  }

  const jobCases: [string, string, (job: Input) => void][] = [
    ["an empty name", "input.name", (job) => (job.name = "   ")],
    ["a name of 101 characters", "input.name", (job) => (job.name = "x".repeat(101))],
    ["a cron expression that does not parse", "input.schedules.0.cron", (job) => (job.schedules[0].cron = "every night")],
    ["a cron with 61 minutes", "input.schedules.0.cron", (job) => (job.schedules[0].cron = "61 2 * * *")],
    ["a 6-field cron firing every second", "input.schedules.0.cron", (job) => (job.schedules[0].cron = "* * * * * *")],
    ["an empty cron", "input.schedules.0.cron", (job) => (job.schedules[0].cron = "")],
    ["an unknown time zone", "input.schedules.0.timezone", (job) => (job.schedules[0].timezone = "Mars/Olympus_Mons")],
    ["a negative exportRetention", "input.schedules.0.exportRetention", (job) => (job.schedules[0].exportRetention = -1)],
    ["an exportRetention of 0 on a FULL job", "input.schedules.0.exportRetention", (job) => (job.schedules[0].exportRetention = 0)],
    ["an exportRetention above 1000", "input.schedules.0.exportRetention", (job) => (job.schedules[0].exportRetention = 1001)],
    ["a negative copyRetention", "input.schedules.0.copyRetention", (job) => (job.schedules[0].copyRetention = -3)],
    ["a negative snapshotRetention", "input.schedules.0.snapshotRetention", (job) => (job.schedules[0].snapshotRetention = -1)],
    ["a schedule name of 101 characters", "input.schedules.0.name", (job) => (job.schedules[0].name = "n".repeat(101))],
    [
      "a bad cron in the second schedule",
      "input.schedules.1.cron",
      (job) => job.schedules.push({ cron: "0 25 * * *", exportRetention: 1 }),
    ],
    ["a FULL job without remoteIds", "input.remoteIds", (job) => delete job.remoteIds],
    ["a FULL job with an empty remoteIds", "input.remoteIds", (job) => (job.remoteIds = [])],
    ["a FULL job with target SRs", "input.srUuids", (job) => (job.srUuids = [srUuid])],
    ["a remote id that is not a uuid", "input.remoteIds.0", (job) => (job.remoteIds = ["local"])],
    ["an unknown remote id", "input.remoteIds.0", (job) => (job.remoteIds = [randomUUID()])],
    ["an unknown remote id after a good one", "input.remoteIds.1", (job) => job.remoteIds.push(randomUUID())],
    ["an unknown VM uuid", "input.selection.vmUuids.0", (job) => (job.selection.vmUuids = [randomUUID()])],
    ["a VM uuid that is not a uuid", "input.selection.vmUuids.1", (job) => job.selection.vmUuids.push("web-ext4")],
    ["both vmUuids and smart", "input.selection", (job) => (job.selection.smart = { tagsAll: ["prod"] })],
    ["neither vmUuids nor smart", "input.selection", (job) => (job.selection = {})],
    ["a bad smart power state", "input.selection.smart.powerStates.0", (job) => (job.selection = { smart: { powerStates: ["Sleeping"] } })],
    [
      "a smart pool id that is not a pool",
      "input.selection.smart.poolIds.0",
      (job) => (job.selection = { smart: { poolIds: [randomUUID()] } }),
    ],
    ["an empty smart tag", "input.selection.smart.tagsAll.0", (job) => (job.selection = { smart: { tagsAll: [" "] } })],
    [
      "an over-long smart tagsNone tag",
      "input.selection.smart.tagsNone.0",
      (job) => (job.selection = { smart: { tagsNone: ["t".repeat(101)] } }),
    ],
    ["concurrency 0", "input.settings.concurrency", (job) => (job.settings.concurrency = 0)],
    ["concurrency 33", "input.settings.concurrency", (job) => (job.settings.concurrency = 33)],
    ["a timeout under a minute", "input.settings.timeoutSeconds", (job) => (job.settings.timeoutSeconds = 5)],
    ["a negative fullInterval", "input.settings.fullInterval", (job) => (job.settings.fullInterval = -1)],
    ["11 retries", "input.settings.retries", (job) => (job.settings.retries = 11)],
    [
      "a health-check SR that is not a uuid",
      "input.settings.healthCheckSrUuid",
      (job) => (job.settings.healthCheckSrUuid = "Local storage"),
    ],
    ["an unknown health-check SR", "input.settings.healthCheckSrUuid", (job) => (job.settings.healthCheckSrUuid = randomUUID())],
    [
      "compression on a DELTA job",
      "input.settings.compression",
      (job) => {
        job.mode = "DELTA";
        job.settings.compression = "GZIP";
      },
    ],
  ];

  const otherModeCases: [string, string, () => Input][] = [
    ["a DISASTER_RECOVERY job without srUuids", "input.srUuids", () => ({ ...drJob(), srUuids: undefined })],
    [
      "a CONTINUOUS_REPLICATION job with an empty srUuids",
      "input.srUuids",
      () => ({ ...drJob(), mode: "CONTINUOUS_REPLICATION", srUuids: [] }),
    ],
    ["a DISASTER_RECOVERY job with an unknown SR", "input.srUuids.0", () => ({ ...drJob(), srUuids: [randomUUID()] })],
    ["a DISASTER_RECOVERY job with an SR that is not a uuid", "input.srUuids.0", () => ({ ...drJob(), srUuids: ["Local storage"] })],
    [
      "a DISASTER_RECOVERY job with a copyRetention of 0",
      "input.schedules.0.copyRetention",
      () => ({ ...drJob(), schedules: [{ cron: "0 3 * * *" }] }),
    ],
    ["a DISASTER_RECOVERY job with remotes", "input.remoteIds", () => ({ ...drJob(), remoteIds: [remoteId] })],
    [
      "a ROLLING_SNAPSHOT job with a snapshotRetention of 0",
      "input.schedules.0.snapshotRetention",
      () => ({ name: "snap", mode: "ROLLING_SNAPSHOT", selection: { smart: {} }, schedules: [{ cron: "0 * * * *", exportRetention: 3 }] }),
    ],
    [
      "a ROLLING_SNAPSHOT job with remotes",
      "input.remoteIds",
      () => ({
        name: "snap",
        mode: "ROLLING_SNAPSHOT",
        selection: { smart: {} },
        remoteIds: [remoteId],
        schedules: [{ cron: "0 * * * *", snapshotRetention: 3 }],
      }),
    ],
  ];

  describe("createJob", () => {
    it.each(jobCases)("refuses %s with BAD_USER_INPUT on %s", async (_what, field, breakIt) => {
      const job = fullJob();
      breakIt(job);
      const error = expectError(await server.graphql(CREATE_JOB, { input: job }, admin), "BAD_USER_INPUT", field);
      expect(error.message.startsWith(`${field}: `)).toBe(true);
    });

    it.each(otherModeCases)("refuses %s with BAD_USER_INPUT on %s", async (_what, field, build) => {
      expectError(await server.graphql(CREATE_JOB, { input: build() }, admin), "BAD_USER_INPUT", field);
    });

    it("saves nothing for a refused job", async () => {
      const job = fullJob("refused-job");
      job.schedules[0].timezone = "Nowhere/Nothing";
      expectError(await server.graphql(CREATE_JOB, { input: job }, admin), "BAD_USER_INPUT");
      expect(await db.job.count({ where: { name: "refused-job" } })).toBe(0);
    });

    it("creates a valid job with its schedules, each firing next in the future in its own time zone", async () => {
      const before = Date.now();
      const job = fullJob("nightly to local");
      job.schedules.push({ name: "tokyo", cron: "30 4 * * *", timezone: "Asia/Tokyo", exportRetention: 2, enabled: true });
      job.schedules.push({ name: "off", cron: "0 0 1 * *", exportRetention: 1, enabled: false });
      const created = expectData(await server.graphql<any>(CREATE_JOB, { input: job }, admin)).createJob;
      expect(created).toMatchObject({
        name: "nightly to local",
        mode: "FULL",
        enabled: true,
        selection: { vmUuids: [vmUuid], smart: null },
        remotes: [{ id: remoteId }],
        srUuids: [],
        settings: {
          compression: "ZSTD",
          concurrency: 2,
          timeoutSeconds: null,
          fullInterval: 0,
          retries: 0,
          quiesce: false,
          healthCheckSrUuid: null,
          reportWhen: "FAILURE",
        },
      });
      const [paris, tokyo, off] = created.schedules;
      expect(paris).toMatchObject({
        name: "nightly",
        cron: "0 2 * * *",
        timezone: "Europe/Paris",
        enabled: true,
        exportRetention: 7,
        copyRetention: 0,
        snapshotRetention: 0,
      });
      expect(tokyo).toMatchObject({ name: "tokyo", timezone: "Asia/Tokyo", exportRetention: 2 });
      for (const [schedule, zone, time] of [
        [paris, "Europe/Paris", "02:00"],
        [tokyo, "Asia/Tokyo", "04:30"],
      ] as const) {
        const next = new Date(schedule.nextRunAt);
        expect(next.getTime()).toBeGreaterThan(before);
        expect(next.getTime() - before).toBeLessThanOrEqual(25 * 3600_000);
        expect(wallClock(next, zone)).toBe(time);
      }
      // 02:00 in Paris is never 02:00 UTC: the zone is really applied.
      expect(wallClock(new Date(paris.nextRunAt), "UTC")).not.toBe("02:00");
      expect(off).toMatchObject({ enabled: false, nextRunAt: null, timezone: "UTC" });
      expect(await db.schedule.count({ where: { jobId: created.id } })).toBe(3);
    });

    it("creates a smart job on the lab pool with power states and tags", async () => {
      const input = {
        name: "smart snapshots",
        mode: "ROLLING_SNAPSHOT",
        selection: { smart: { poolIds: [poolId], tagsAll: ["prod"], tagsNone: ["test"], powerStates: ["Running", "Paused"] } },
        schedules: [{ cron: "15 * * * *", snapshotRetention: 4 }],
      };
      const created = expectData(await server.graphql<any>(CREATE_JOB, { input }, admin)).createJob;
      expect(created.selection).toEqual({
        vmUuids: [],
        smart: { poolIds: [poolId], tagsAll: ["prod"], tagsAny: [], tagsNone: ["test"], powerStates: ["Running", "Paused"] },
      });
    });

    it("refuses a second job with the same name with CONFLICT on input.name", async () => {
      expectData(await server.graphql(CREATE_JOB, { input: fullJob("twice") }, admin));
      const error = expectError(await server.graphql(CREATE_JOB, { input: fullJob("twice") }, admin), "CONFLICT", "input.name");
      expect(error.message).toMatch(/"twice" already exists/);
      expect(await db.job.count({ where: { name: "twice" } })).toBe(1);
    });
  });

  describe("updateJob", () => {
    it("keeps a schedule given with its id, drops one left out and adds one without id", async () => {
      const input = fullJob("to update");
      input.schedules.push({ name: "weekly", cron: "0 4 * * 0", exportRetention: 4 });
      const created = expectData(await server.graphql<any>(CREATE_JOB, { input }, admin)).createJob;
      const [nightly, weekly] = created.schedules;

      const update = fullJob("to update");
      update.selection.vmUuids = [vmUuid, secondVmUuid];
      update.schedules = [
        { id: nightly.id, name: "nightly", cron: "0 1 * * *", timezone: "Europe/Paris", exportRetention: 9 },
        { name: "monthly", cron: "0 5 1 * *", exportRetention: 12 },
      ];
      const updated = expectData(await server.graphql<any>(UPDATE_JOB, { id: created.id, input: update }, admin)).updateJob;
      expect(updated.selection.vmUuids).toEqual([vmUuid, secondVmUuid]);
      expect(updated.schedules).toHaveLength(2);
      const kept = updated.schedules.find((s: any) => s.id === nightly.id);
      expect(kept).toMatchObject({ cron: "0 1 * * *", exportRetention: 9 });
      expect(wallClock(new Date(kept.nextRunAt), "Europe/Paris")).toBe("01:00");
      const added = updated.schedules.find((s: any) => s.id !== nightly.id);
      expect(added).toMatchObject({ name: "monthly", cron: "0 5 1 * *", exportRetention: 12 });
      expect(added.id).not.toBe(weekly.id);
      expect(await db.schedule.findUnique({ where: { id: weekly.id } })).toBeNull();
      expect((await db.schedule.findMany({ where: { jobId: created.id } })).map((s) => s.id).sort()).toEqual([nightly.id, added.id].sort());
    });

    it("refuses a schedule id of another job with BAD_USER_INPUT on its id, and changes nothing", async () => {
      const a = expectData(await server.graphql<any>(CREATE_JOB, { input: fullJob("job a") }, admin)).createJob;
      const b = expectData(await server.graphql<any>(CREATE_JOB, { input: fullJob("job b") }, admin)).createJob;
      const update = fullJob("job a");
      update.schedules = [{ id: b.schedules[0].id, cron: "0 6 * * *", exportRetention: 1 }];
      expectError(await server.graphql(UPDATE_JOB, { id: a.id, input: update }, admin), "BAD_USER_INPUT", "input.schedules.0.id");
      expect((await db.schedule.findUniqueOrThrow({ where: { id: b.schedules[0].id } })).cron).toBe("0 2 * * *");
      expect(await db.schedule.count({ where: { jobId: a.id } })).toBe(1);
    });

    it("refuses a bad value on update with BAD_USER_INPUT naming the field, and changes nothing", async () => {
      const created = expectData(await server.graphql<any>(CREATE_JOB, { input: fullJob("stays as it was") }, admin)).createJob;
      const update = fullJob("stays as it was");
      update.schedules = [{ id: created.schedules[0].id, cron: "0 2 * * *", timezone: "Europe/Atlantis", exportRetention: 1 }];
      expectError(
        await server.graphql(UPDATE_JOB, { id: created.id, input: update }, admin),
        "BAD_USER_INPUT",
        "input.schedules.0.timezone",
      );
      const row = await db.schedule.findUniqueOrThrow({ where: { id: created.schedules[0].id } });
      expect(row).toMatchObject({ timezone: "Europe/Paris", exportRetention: 7 });
    });

    it("refuses renaming a job to another job's name with CONFLICT on input.name", async () => {
      expectData(await server.graphql(CREATE_JOB, { input: fullJob("taken name") }, admin));
      const other = expectData(await server.graphql<any>(CREATE_JOB, { input: fullJob("free name") }, admin)).createJob;
      expectError(await server.graphql(UPDATE_JOB, { id: other.id, input: fullJob("taken name") }, admin), "CONFLICT", "input.name");
    });

    it("answers NOT_FOUND for an unknown job", async () => {
      expectError(await server.graphql(UPDATE_JOB, { id: randomUUID(), input: fullJob() }, admin), "NOT_FOUND");
    });
  });

  describe("connectPool", () => {
    const pool = (change: Input = {}): Input => ({
      name: `pool-${randomUUID()}`,
      url: "http://127.0.0.1:9",
      username: "root",
      password: "pw",
      ...change,
    });
    const poolCases: [string, string, Input][] = [
      ["an empty name", "input.name", { name: "" }],
      ["a name of 101 characters", "input.name", { name: "p".repeat(101) }],
      ["an ftp:// url", "input.url", { url: "ftp://pool-master.example.net" }],
      ["a url without a scheme", "input.url", { url: "pool-master.example.net" }],
      ["a url carrying credentials", "input.url", { url: "https://root:pw@pool-master.example.net" }],
      ["an empty url", "input.url", { url: " " }],
      ["an empty username", "input.username", { username: "" }],
      ["no password", "input.password", { password: null }],
      ["an empty password", "input.password", { password: "" }],
    ];

    it.each(poolCases)("refuses %s with BAD_USER_INPUT on %s, and saves nothing", async (_what, field, change) => {
      const input = pool(change);
      expectError(await server.graphql(CONNECT_POOL, { input }, admin), "BAD_USER_INPUT", field);
      expect(await db.pool.count()).toBe(1);
    });

    it("refuses a second pool with the lab pool's name with CONFLICT on input.name", async () => {
      const lab = server.cairn.labs[0];
      const input = { name: lab.poolName, url: lab.url, username: lab.user, password: lab.password };
      expectError(await server.graphql(CONNECT_POOL, { input }, admin), "CONFLICT", "input.name");
      expect(await db.pool.count()).toBe(1);
    });
  });

  describe("createRemote", () => {
    const remote = (change: Input = {}): Input => ({ name: `remote-${randomUUID()}`, kind: "LOCAL", location: server.dataDir, ...change });
    const s3 = (change: Input = {}): Input =>
      remote({
        kind: "S3",
        location: "backups/cairn",
        username: "AKIA",
        password: "s3-secret",
        options: { endpoint: "http://127.0.0.1:9" },
        ...change,
      });
    const remoteCases: [string, string, () => Input][] = [
      ["an empty name", "input.name", () => remote({ name: "" })],
      ["a LOCAL relative path", "input.location", () => remote({ location: "backups/here" })],
      ["an empty location", "input.location", () => remote({ location: "  " })],
      ["a LOCAL remote with options", "input.options.compress", () => remote({ options: { compress: true } })],
      ["a LOCAL remote with a password", "input.password", () => remote({ password: "nope" })],
      ["a LOCAL remote with a username", "input.username", () => remote({ username: "nobody" })],
      ["options that are not an object", "input.options", () => remote({ options: [1, 2] })],
      ["an unknown S3 option", "input.options.bogus", () => s3({ options: { endpoint: "http://127.0.0.1:9", bogus: 1 } })],
      ["an S3 endpoint that is not http(s)", "input.options.endpoint", () => s3({ options: { endpoint: "ftp://s3.example.net" } })],
      ["an S3 region with spaces", "input.options.region", () => s3({ options: { region: "eu west" } })],
      ["an S3 part size under 5 MiB", "input.options.partSizeMiB", () => s3({ options: { partSizeMiB: 1 } })],
      ["an S3 bucket name in capitals", "input.location", () => s3({ location: "Backups" })],
      ["an S3 prefix with ..", "input.location", () => s3({ location: "backups/../etc" })],
      ["an S3 remote without access key", "input.username", () => s3({ username: null })],
      ["an S3 remote without secret key", "input.password", () => s3({ password: "" })],
      [
        "an SMB location without a share",
        "input.location",
        () => remote({ kind: "SMB", location: "nas.example.net", username: "u", password: "p" }),
      ],
      [
        "an unknown SMB option",
        "input.options.workgroup",
        () => remote({ kind: "SMB", location: "//nas/share", username: "u", password: "p", options: { workgroup: "W" } }),
      ],
      ["an SMB remote without a user", "input.username", () => remote({ kind: "SMB", location: "//nas/share", password: "p" })],
      ["an NFS location without nfs://", "input.location", () => remote({ kind: "NFS", location: "nas:/export" })],
      [
        "an NFS remote with a password (AUTH_SYS has none)",
        "input.password",
        () => remote({ kind: "NFS", location: "nfs://nas/export", password: "p" }),
      ],
    ];

    it.each(remoteCases)("refuses %s with BAD_USER_INPUT on %s, and saves nothing", async (_what, field, build) => {
      const input = build();
      expectError(await server.graphql(CREATE_REMOTE, { input }, admin), "BAD_USER_INPUT", field);
      expect(await db.remote.count({ where: { name: input.name } })).toBe(0);
    });

    it("refuses a second remote with an existing name with CONFLICT on input.name", async () => {
      expectError(await server.graphql(CREATE_REMOTE, { input: remote({ name: "local" }) }, admin), "CONFLICT", "input.name");
      expect(await db.remote.count({ where: { name: "local" } })).toBe(1);
    });
  });
});
