/**
 * Issue 14, API throughput: the jobs and remotes lists are kept in memory per process between changes (no query for them
 * per request), and what the API answers stays exact. Two Cairn processes on one database: a job or remote changed through
 * the other process, or by hand in the database, is seen on the very next request (the Postgres trigger's NOTIFY, and the
 * event bus's sync before a kept list is used). That the lists are kept at all is shown by a change made with triggers off,
 * which is not seen until a notified one; with the LISTEN connection cut, every answer comes from the database.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { graphql } from "../support/graphql.js";
import { stopAll } from "../support/stop-all.js";
import { tempFolder } from "../support/temp-folder.js";
import { expectData, openDatabase } from "./api-assertions.js";

const JOBS = graphql(`{ jobs { id name enabled remotes { id name } schedules { id name cron timezone enabled }
  lastRun { id status createdAt endedAt progress transferredBytes vmsSucceeded error } } }`);
const REMOTES = graphql("{ remotes { id name enabled } }");
const CREATE_REMOTE = graphql("mutation($input: RemoteInput!) { createRemote(input: $input) { id name } }");
const UPDATE_REMOTE = graphql("mutation($id: ID!, $input: RemoteInput!) { updateRemote(id: $id, input: $input) { id name } }");

describe("jobs and remotes kept in memory across two processes on one database", () => {
  let first: TestCairn;
  let second: TestCairn;
  let db: Db;
  let admin: string;
  let viewer: string;

  beforeAll(async () => {
    first = await startTestCairn();
    second = await startTestCairn({ env: { DATABASE_URL: first.database.url } });
    db = openDatabase(first);
    admin = await first.login();
    viewer = await second.login();
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => second?.stop(),
      () => first?.stop(),
    ),
  );

  const jobsOnSecond = async () => expectData(await second.graphql(JOBS, {}, viewer)).jobs;
  const remotesOnSecond = async () => expectData(await second.graphql(REMOTES, {}, viewer)).remotes;
  /** Asked twice of the second process: the second answer is the kept one. */
  const warm = async () => {
    await jobsOnSecond();
    await remotesOnSecond();
    await jobsOnSecond();
    await remotesOnSecond();
  };
  const makeJob = async (name = `job-${randomUUID()}`) => {
    const remote = await db.remote.create({ data: { name: `remote-${randomUUID()}`, kind: "LOCAL", location: `/tmp/${randomUUID()}` } });
    return db.job.create({
      data: {
        name,
        mode: "FULL",
        selection: { vmUuids: [] },
        srUuids: [],
        settings: {},
        remotes: { create: [{ remoteId: remote.id }] },
        schedules: { create: [{ name: "nightly", cron: "0 2 * * *", timezone: "UTC", enabled: false }] },
      },
      include: { schedules: true },
    });
  };

  it("sees a remote renamed through the other process on the very next request, in the remotes list and on every job", async () => {
    const location = await tempFolder("cairn-configuration-cache-");
    const input = { name: `remote-${randomUUID()}`, kind: "LOCAL" as const, location };
    const remoteId = expectData(await first.graphql(CREATE_REMOTE, { input }, admin)).createRemote.id;
    const job = await makeJob();
    await db.jobRemote.create({ data: { jobId: job.id, remoteId } });
    await db.jobRemote.deleteMany({ where: { jobId: job.id, remoteId: { not: remoteId } } });
    await warm();
    const name = `renamed-${randomUUID()}`;
    expectData(await first.graphql(UPDATE_REMOTE, { id: remoteId, input: { ...input, name } }, admin));
    expect((await remotesOnSecond()).find((remote) => remote.id === remoteId)?.name).toBe(name);
    expect((await jobsOnSecond()).find((listed) => listed.id === job.id)?.remotes).toEqual([{ id: remoteId, name }]);
  });

  it("sees changes made by hand in the database on the very next request: job, schedule, job remotes, remote, deletion", async () => {
    const job = await makeJob();
    const listed = async () => (await jobsOnSecond()).find((candidate) => candidate.id === job.id);
    await warm();

    await db.job.update({ where: { id: job.id }, data: { name: `${job.name}-renamed`, enabled: false } });
    expect(await listed()).toMatchObject({ name: `${job.name}-renamed`, enabled: false });

    await db.schedule.update({ where: { id: job.schedules[0].id }, data: { cron: "30 4 * * 1", timezone: "Europe/Paris" } });
    expect((await listed())?.schedules).toEqual([
      { id: job.schedules[0].id, name: "nightly", cron: "30 4 * * 1", timezone: "Europe/Paris", enabled: false },
    ]);
    const added = await db.schedule.create({ data: { jobId: job.id, name: "weekly", cron: "0 5 * * 0", enabled: false } });
    expect((await listed())?.schedules.map((schedule) => schedule.id)).toEqual([job.schedules[0].id, added.id]);

    const other = await db.remote.create({ data: { name: `remote-${randomUUID()}`, kind: "LOCAL", location: `/tmp/${randomUUID()}` } });
    await db.jobRemote.deleteMany({ where: { jobId: job.id } });
    await db.jobRemote.create({ data: { jobId: job.id, remoteId: other.id } });
    expect((await listed())?.remotes).toEqual([{ id: other.id, name: other.name }]);

    await db.remote.update({ where: { id: other.id }, data: { enabled: false } });
    expect((await remotesOnSecond()).find((remote) => remote.id === other.id)?.enabled).toBe(false);

    await db.job.delete({ where: { id: job.id } });
    expect(await listed()).toBeUndefined();
  });

  it("serves the kept lists: a change hidden from the triggers is not seen until a notified one", async () => {
    const job = await makeJob();
    await warm();
    // Triggers off for this transaction only (replica mode): the rename sends no notification, and is not read back.
    await db.$transaction(async (tx) => {
      await tx.$executeRawUnsafe("SET LOCAL session_replication_role = replica");
      await tx.job.update({ where: { id: job.id }, data: { name: `${job.name}-hidden` } });
    });
    expect((await jobsOnSecond()).find((listed) => listed.id === job.id)?.name).toBe(job.name);
    // Any notified change (here another job's) drops the lists of every process.
    await makeJob();
    expect((await jobsOnSecond()).find((listed) => listed.id === job.id)?.name).toBe(`${job.name}-hidden`);
  });

  it("reads the database while its notifications cannot be trusted: the LISTEN connection cut", async () => {
    const job = await makeJob();
    await warm();
    await db.$executeRaw`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cairn-events-listener'`;
    // Notified, but to a connection that is gone: only a read of the database can show it.
    await db.job.update({ where: { id: job.id }, data: { name: `${job.name}-while-cut` } });
    expect((await jobsOnSecond()).find((listed) => listed.id === job.id)?.name).toBe(`${job.name}-while-cut`);
    await db.job.update({ where: { id: job.id }, data: { name: `${job.name}-again` } });
    expect((await jobsOnSecond()).find((listed) => listed.id === job.id)?.name).toBe(`${job.name}-again`);
  });

  it("names a run's job and schedule as they are now, changed by hand after the run", async () => {
    const job = await makeJob();
    const run = await db.run.create({ data: { jobId: job.id, scheduleId: job.schedules[0].id, trigger: "SCHEDULE", status: "SUCCESS" } });
    const RUN = graphql("query($id: ID!) { run(id: $id) { job { id name } schedule { id cron } } }");
    const ask = async () => expectData(await second.graphql(RUN, { id: run.id }, viewer)).run;
    expect(await ask()).toEqual({ job: { id: job.id, name: job.name }, schedule: { id: job.schedules[0].id, cron: "0 2 * * *" } });
    await db.job.update({ where: { id: job.id }, data: { name: `${job.name}-later` } });
    await db.schedule.update({ where: { id: job.schedules[0].id }, data: { cron: "15 1 * * *" } });
    expect(await ask()).toEqual({
      job: { id: job.id, name: `${job.name}-later` },
      schedule: { id: job.schedules[0].id, cron: "15 1 * * *" },
    });
    await db.job.delete({ where: { id: job.id } });
    expect(await ask()).toEqual({ job: null, schedule: null });
  });

  it("answers each job's newest run, whole, and none for a job that never ran", async () => {
    const job = await makeJob();
    const never = await makeJob();
    const at = (minutes: number) => new Date(Date.UTC(2026, 10, 1, 12, minutes));
    await db.run.create({ data: { jobId: job.id, trigger: "MANUAL", status: "FAILURE", createdAt: at(0), error: "older" } });
    const newest = await db.run.create({
      data: {
        jobId: job.id,
        trigger: "SCHEDULE",
        status: "SUCCESS",
        createdAt: at(30),
        endedAt: at(41),
        progress: 1,
        transferredBytes: 5_000_000_123n,
        vmsSucceeded: 3,
      },
    });
    await db.run.create({ data: { jobId: job.id, trigger: "MANUAL", status: "SKIPPED", createdAt: at(10) } });
    const jobs = await jobsOnSecond();
    expect(jobs.find((listed) => listed.id === job.id)?.lastRun).toEqual({
      id: newest.id,
      status: "SUCCESS",
      createdAt: at(30).toISOString(),
      endedAt: at(41).toISOString(),
      progress: 1,
      transferredBytes: 5_000_000_123,
      vmsSucceeded: 3,
      error: null,
    });
    expect(jobs.find((listed) => listed.id === never.id)?.lastRun).toBeNull();
  });
});
