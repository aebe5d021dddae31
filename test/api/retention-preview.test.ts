/**
 * GFS retention through the API: the schedule fields (stored, read back, validated per field) and retentionPreview, answered
 * from the restore points indexed for the job and schedule. The schedule fires once, on 2099-06-01 at 00:00 in Paris, so
 * the next run's decision is fixed whatever day the test runs.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";

const SCHEDULE_FIELDS = "id exportRetention gfsDays gfsWeeks gfsMonths gfsYears weekStart dayStartHour";
const CREATE_JOB = `mutation($input: JobInput!) { createJob(input: $input) { id schedules { ${SCHEDULE_FIELDS} } } }`;
const PREVIEW = `query($j: ID!, $s: ID!) { retentionPreview(jobId: $j, scheduleId: $s) { keep reasons restorePoint { id timestamp vmUuid } } }`;

describe("GFS retention at the API", () => {
  let server: TestCairn;
  let db: Db;
  let admin: string;
  let viewer: string;
  let remoteId: string;
  let folder: string;

  beforeAll(async () => {
    server = await startTestCairn();
    db = openDatabase(server);
    admin = await server.login();
    viewer = await createUser(server, "viewer-gfs", "VIEWER");
    folder = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-gfs-remote-"));
    const created = await server.graphql<any>(
      "mutation($input: RemoteInput!) { createRemote(input: $input) { id } }",
      { input: { name: "gfs", kind: "LOCAL", location: folder } },
      admin,
    );
    remoteId = expectData(created).createRemote.id;
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
      () => (folder ? fs.rm(folder, { recursive: true, force: true }) : undefined),
    ),
  );

  const job = (schedule: Record<string, unknown>, mode = "DELTA") => ({
    name: `gfs-${randomUUID()}`,
    mode,
    selection: { smart: { tagsAll: ["gfs"] } },
    remoteIds: mode === "ROLLING_SNAPSHOT" ? [] : [remoteId],
    schedules: [{ cron: "0 0 0 1 6 * 2099", timezone: "Europe/Paris", exportRetention: 2, ...schedule }],
  });

  it("stores the GFS fields of a schedule, with their defaults", async () => {
    const plain = expectData(await server.graphql<any>(CREATE_JOB, { input: job({}) }, admin)).createJob.schedules[0];
    expect(plain).toMatchObject({ gfsDays: 0, gfsWeeks: 0, gfsMonths: 0, gfsYears: 0, weekStart: "MONDAY", dayStartHour: 0 });
    const input = { gfsDays: 7, gfsWeeks: 4, gfsMonths: 12, gfsYears: 5, weekStart: "SUNDAY", dayStartHour: 6 };
    const gfs = expectData(await server.graphql<any>(CREATE_JOB, { input: job(input) }, admin)).createJob.schedules[0];
    expect(gfs).toMatchObject(input);
  });

  it("refuses counts below 0 or too large, an hour outside 0-23, and GFS on a mode that keeps no backups on remotes", async () => {
    for (const [schedule, field] of [
      [{ gfsDays: -1 }, "input.schedules.0.gfsDays"],
      [{ gfsWeeks: 521 }, "input.schedules.0.gfsWeeks"],
      [{ gfsMonths: 1201 }, "input.schedules.0.gfsMonths"],
      [{ gfsYears: 101 }, "input.schedules.0.gfsYears"],
      [{ dayStartHour: 24 }, "input.schedules.0.dayStartHour"],
    ] as const) {
      const error = expectError(await server.graphql(CREATE_JOB, { input: job(schedule) }, admin), "BAD_USER_INPUT", field);
      expect(error.message).toMatch(/must be a whole number from 0 to \d+/);
    }
    const snapshots = job({ exportRetention: 0, snapshotRetention: 2, gfsWeeks: 4 }, "ROLLING_SNAPSHOT");
    const error = expectError(
      await server.graphql(CREATE_JOB, { input: snapshots }, admin),
      "BAD_USER_INPUT",
      "input.schedules.0.gfsWeeks",
    );
    expect(error.message).toMatch(/applies to FULL, DELTA and MIRROR jobs only, not to ROLLING_SNAPSHOT/);
  });

  it("retentionPreview says what the next run removes and why each other point stays, per VM", async () => {
    const created = expectData(
      await server.graphql<any>(CREATE_JOB, { input: job({ gfsDays: 3, gfsWeeks: 2, gfsMonths: 3 }) }, admin),
    ).createJob;
    const [scheduleId, jobId] = [created.schedules[0].id, created.id];
    const other = expectData(await server.graphql<any>(CREATE_JOB, { input: job({}) }, admin)).createJob;
    const [vmA, vmB] = [randomUUID(), randomUUID()];
    const points: Record<string, { vm: string; at: string; scheduleId?: string; jobId?: string }> = {
      p1: { vm: vmA, at: "2099-04-10T10:00:00Z" },
      p2: { vm: vmA, at: "2099-04-20T10:00:00Z" },
      p3: { vm: vmA, at: "2099-05-03T10:00:00Z" },
      p4: { vm: vmA, at: "2099-05-20T10:00:00Z" },
      p5: { vm: vmA, at: "2099-05-27T10:00:00Z" },
      p6: { vm: vmA, at: "2099-05-29T10:00:00Z" },
      p7: { vm: vmA, at: "2099-05-30T10:00:00Z" },
      p8: { vm: vmA, at: "2099-05-31T10:00:00Z" },
      b1: { vm: vmB, at: "2099-05-10T10:00:00Z" },
      elsewhere: { vm: vmA, at: "2099-05-01T10:00:00Z", jobId: other.id, scheduleId: other.schedules[0].id },
    };
    const ids: Record<string, string> = {};
    for (const [name, point] of Object.entries(points)) {
      const row = await db.restorePoint.create({
        data: {
          kind: "VHD_CHAIN",
          vmUuid: point.vm,
          vmName: name,
          timestamp: new Date(point.at),
          remoteId,
          path: `xo-vm-backups/${point.vm}/${name}.json`,
          jobId: point.jobId ?? jobId,
          scheduleId: point.scheduleId ?? scheduleId,
        },
      });
      ids[row.id] = name;
    }

    const preview = expectData(await server.graphql<any>(PREVIEW, { j: jobId, s: scheduleId }, viewer)).retentionPreview;
    const byName = Object.fromEntries(
      preview.map((decision: any) => [ids[decision.restorePoint.id], { keep: decision.keep, reasons: decision.reasons }]),
    );
    // The next run's backup (2099-06-01 00:00 Paris, a Monday) is the newest of each VM: it takes one of the newest 2 and
    // is the oldest of its day, ISO week 2099-W23 and month 2099-06.
    const removed = {
      keep: false,
      reasons: ["not among the newest 2, and not the oldest backup of any of the last 3 days, 2 weeks, 3 months (Europe/Paris)"],
    };
    expect(byName).toEqual({
      p8: { keep: true, reasons: ["newest 2", "oldest of day 2099-05-31"] },
      p7: { keep: true, reasons: ["oldest of day 2099-05-30"] },
      p6: removed,
      p5: { keep: true, reasons: ["oldest of week 2099-W22"] },
      p4: removed,
      p3: { keep: true, reasons: ["oldest of month 2099-05"] },
      p2: removed,
      p1: { keep: true, reasons: ["oldest of month 2099-04"] },
      b1: { keep: true, reasons: ["newest 2", "oldest of month 2099-05"] },
    });
    // Newest first, and only this schedule's points.
    const times = preview.map((decision: any) => Date.parse(decision.restorePoint.timestamp));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(preview).toHaveLength(9);
  });

  it("answers NOT_FOUND for a job or a schedule that is not there, or a schedule of another job", async () => {
    const first = expectData(await server.graphql<any>(CREATE_JOB, { input: job({}) }, admin)).createJob;
    const second = expectData(await server.graphql<any>(CREATE_JOB, { input: job({}) }, admin)).createJob;
    expectError(await server.graphql(PREVIEW, { j: randomUUID(), s: first.schedules[0].id }, viewer), "NOT_FOUND");
    expectError(await server.graphql(PREVIEW, { j: first.id, s: randomUUID() }, viewer), "NOT_FOUND");
    const error = expectError(await server.graphql(PREVIEW, { j: first.id, s: second.schedules[0].id }, viewer), "NOT_FOUND");
    expect(error.message).toContain("schedule of job");
    expect(expectData(await server.graphql<any>(PREVIEW, { j: first.id, s: first.schedules[0].id }, viewer)).retentionPreview).toEqual([]);
  });
});
