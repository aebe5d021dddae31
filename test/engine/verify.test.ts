/**
 * Verify against the lab and a LOCAL remote: `verifyRestorePoint` and VERIFY jobs read restore points end to end and check
 * every checksum without touching a pool; the verdict lands on the restore point (integrity, verifiedAt); a flipped byte in
 * a VHD data block or in an XVA makes that point DAMAGED (naming the file, and the block) and the run FAILURE, while the
 * others stay OK; a VERIFY job reports like a backup job; the restore lease waits for retention ("waiting: ...") and
 * cancelRun stops it; the API refuses what it must, with the right codes.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import { createClient } from "graphql-ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { Db } from "../../server/db/prisma.js";
import { VhdFile } from "../../server/formats/vhd/index.js";
import { flipByte as flipLocalByte } from "../support/flip-byte.js";
import { createRemote } from "../../server/remotes/create-remote.js";
import type { Remote } from "../../server/remotes/remote.js";
import { acquireVmLock } from "../../server/repository/lock.js";
import { scanRepository } from "../../server/repository/scanner.js";
import { expectError, openDatabase } from "../api/api-assertions.js";
import { startWebhookPeer, type WebhookPeer } from "../reports/report-peers.js";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { createUser } from "../support/cairn-server.js";

type Rec = Record<string, any>;

const INTEGRITY = `integrity { status verifiedAt problems { file block detail } repaired } verifiedAt`;

describe("verify: restore points read end to end against their checksums", () => {
  let f: BackupFixture;
  let hooks: WebhookPeer;
  let db: Db;
  let remote: Remote;
  let deltaPoints: Rec[];
  let fullPoints: Rec[];
  let deltaVm: { uuid: string; ref: string };
  let fullVm: { uuid: string; ref: string };

  beforeAll(async () => {
    hooks = await startWebhookPeer();
    // The webhook receiver listens on this machine: allowed only with REPORT_WEBHOOK_ALLOW_PRIVATE.
    f = await startBackupFixture({ env: { REPORT_WEBHOOK_ALLOW_PRIVATE: "true" } });
    db = openDatabase(f.server);
    remote = createRemote({ kind: "LOCAL", location: f.remoteDir });
    await remote.open();
    deltaVm = f.vm("db-data");
    fullVm = f.vm("web-ext4");
    const delta = await f.createJob({
      name: "delta to verify",
      mode: "DELTA",
      selection: { vmUuids: [deltaVm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 3 }],
    });
    const [disk] = f.diskRefs(deltaVm.ref);
    for (let i = 0; i < 3; i++) {
      if (i > 0) await f.xapi.call("lab.scribble", disk, 1, `verify-${i}`);
      expectSuccess(await f.runToEnd(delta.id, delta.schedules[0].id));
    }
    const full = await f.createJob({
      name: "full to verify",
      mode: "FULL",
      selection: { vmUuids: [fullVm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
    });
    for (let i = 0; i < 2; i++) expectSuccess(await f.runToEnd(full.id, full.schedules[0].id));
    const byTime = (a: Rec, b: Rec) => Date.parse(a.timestamp) - Date.parse(b.timestamp);
    deltaPoints = (await f.restorePoints(delta.id, "VHD_CHAIN")).sort(byTime);
    fullPoints = (await f.restorePoints(full.id, "XVA")).sort(byTime);
    expect(deltaPoints).toHaveLength(3);
    expect(fullPoints).toHaveLength(2);
  });

  afterAll(async () => {
    await remote?.close();
    await db?.$disconnect();
    await f?.stop();
    await hooks?.stop();
  });

  async function startVerify(pointId: string, repair = false): Promise<string> {
    const data = await f.gql<{ verifyRestorePoint: { id: string; kind: string } }>(
      "mutation($id: ID!, $r: Boolean) { verifyRestorePoint(id: $id, repair: $r) { id kind } }",
      { id: pointId, r: repair },
    );
    expect(data.verifyRestorePoint.kind).toBe("VERIFY");
    return data.verifyRestorePoint.id;
  }

  const verify = async (pointId: string, repair = false) => f.waitForEnd(await startVerify(pointId, repair));

  async function integrity(pointId: string): Promise<Rec> {
    return (await f.gql<{ restorePoint: Rec }>(`query($id: ID!) { restorePoint(id: $id) { id ${INTEGRITY} } }`, { id: pointId }))
      .restorePoint;
  }

  /** The backup of a restore point as the remote holds it (its metadata path, VHD chains, XVA). */
  async function backupOf(point: Rec, vmUuid: string) {
    const scan = await scanRepository(remote, { vmUuid });
    const backup = scan.backups.find((b) => b.timestamp === Date.parse(point.timestamp));
    if (!backup) throw new Error(`no backup at ${point.timestamp} on the remote: ${JSON.stringify(scan.problems)}`);
    return backup;
  }

  /** Inverts one byte of a file on the local remote. */
  function flipByte(remotePath: string, offset: number): Promise<void> {
    return flipLocalByte(path.join(f.remoteDir, remotePath), offset);
  }

  const verifyTasks = (run: Rec) => run.tasks.filter((t: Rec) => t.kind === "verify");

  /** Resolves with `params.reports` once the run's report was handled (re-read at each of its events; no polling). */
  async function reported(runId: string): Promise<Rec> {
    const controller = new AbortController();
    const events = f.server.cairn.services.events.subscribe(controller.signal);
    const timer = setTimeout(() => controller.abort(), 60_000);
    const read = async () =>
      ((await db.run.findUniqueOrThrow({ where: { id: runId }, select: { params: true } })).params as { reports?: Rec } | null)?.reports;
    try {
      let record = await read();
      if (record) return record;
      for await (const event of events) {
        if (event.type !== "run" || event.runId !== runId) continue;
        record = await read();
        if (record) return record;
      }
      throw new Error(`the report of run ${runId} was not handled within 60 s`);
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
  }

  it("verifies each restore point of a DELTA and a FULL job: SUCCESS, integrity OK with verifiedAt, one verify task with its bytes", async () => {
    for (const [point, vm] of [...deltaPoints.map((p) => [p, deltaVm] as const), ...fullPoints.map((p) => [p, fullVm] as const)]) {
      const before = await integrity(point.id);
      expect(before).toMatchObject({ integrity: { status: "UNVERIFIED", verifiedAt: null, problems: [], repaired: [] }, verifiedAt: null });
      const run = await verify(point.id);
      expectSuccess(run);
      const kind = (await f.gql<{ run: Rec }>("query($id: ID!) { run(id: $id) { kind job { id } } }", { id: run.id })).run;
      expect(kind).toEqual({ kind: "VERIFY", job: null });
      const [task] = verifyTasks(run);
      expect(verifyTasks(run)).toHaveLength(1);
      expect(task).toMatchObject({ status: "SUCCESS", progress: 1, vmUuid: vm.uuid });
      expect(task.name).toBe(`verify ${point.vmName} ${point.timestamp.replace(/\.\d{3}Z$/, "Z")} on local`);
      expect(task.result).toMatchObject({ restorePointId: point.id, status: "OK", problems: [], repaired: [] });
      expect(task.result.checkedBytes).toBeGreaterThan(0);
      expect(task.sizeBytes).toBe(task.result.checkedBytes);
      const after = await integrity(point.id);
      expect(after.integrity).toMatchObject({ status: "OK", problems: [], repaired: [] });
      expect(after.integrity.verifiedAt).not.toBeNull();
      expect(after.verifiedAt).toBe(after.integrity.verifiedAt);
    }
  });

  it("runs a schedule-less VERIFY job by hand over every restore point of its VMs (smart selection) on its remotes; verifyOlderThanDays skips fresh ones", async () => {
    const job = await f.createJob({
      name: "verify prod",
      mode: "VERIFY",
      selection: { smart: { tagsAll: ["prod"] } },
      remoteIds: [f.remoteId],
      settings: { reportWhen: "FAILURE", reportWebhookUrl: `${hooks.url}/verify-prod` },
    });
    expect(job.schedules).toEqual([]);
    const all = [...deltaPoints, ...fullPoints];
    const verifiedBefore = new Map<string, number>();
    for (const point of all) verifiedBefore.set(point.id, Date.parse((await integrity(point.id)).verifiedAt));

    const run = await f.runToEnd(job.id);
    expectSuccess(run);
    expect(run).toMatchObject({ vmsTotal: 2, vmsSucceeded: 2, vmsFailed: 0 });
    const tasks = verifyTasks(run);
    expect(tasks.map((t: Rec) => t.result.restorePointId).sort()).toEqual(all.map((p) => p.id).sort());
    expect(tasks.every((t: Rec) => t.status === "SUCCESS" && t.result.status === "OK")).toBe(true);
    for (const point of all) {
      const after = await integrity(point.id);
      expect(after.integrity.status).toBe("OK");
      expect(Date.parse(after.verifiedAt)).toBeGreaterThan(verifiedBefore.get(point.id)!);
    }
    // reportWhen FAILURE: a SUCCESS run is decided on and not sent, as for a backup job.
    expect(await reported(run.id)).toMatchObject({ reportWhen: "FAILURE", wanted: false, deliveries: [] });

    const fresh = await f.createJob({
      name: "verify prod weekly",
      mode: "VERIFY",
      selection: { vmUuids: [deltaVm.uuid, fullVm.uuid] },
      remoteIds: [f.remoteId],
      settings: { verifyOlderThanDays: 7 },
    });
    const skipped = await f.runToEnd(fresh.id);
    expect(skipped.status).toBe("SKIPPED");
    expect(skipped.error).toMatch(/verified within 7 days/);
    expect(verifyTasks(skipped)).toEqual([]);
  });

  it("finds a byte flipped inside a data block of the newest delta: the verify fails, that point is DAMAGED naming the VHD and block, the older points stay OK", async () => {
    const newest = deltaPoints[2];
    const backup = await backupOf(newest, deltaVm.uuid);
    const vhdPath = backup.disks[0].chain.at(-1)!;
    const vhd = await VhdFile.open(path.join(f.remoteDir, vhdPath));
    let block = -1;
    let offset = -1;
    try {
      for (let i = 0; i < vhd.blockCount && block < 0; i++) {
        if (vhd.hasBlock(i)) {
          block = i;
          offset = vhd.dataOffset(i)! + 4096 + 17;
        }
      }
    } finally {
      await vhd.close();
    }
    expect(block, "the newest delta holds a data block").toBeGreaterThanOrEqual(0);
    await flipByte(vhdPath, offset);

    const run = await verify(newest.id);
    expect(run.status).toBe("FAILURE");
    expect(run.error).toMatch(/is damaged .*restore from another restore point; this one cannot be trusted/);
    const [task] = verifyTasks(run);
    expect(task.status).toBe("FAILURE");
    expect(task.message).toContain(`1 damaged block in ${vhdPath} (block ${block})`);
    expect(task.message).toMatch(/restore from another restore point; this one cannot be trusted\.$/);
    expect(task.result).toMatchObject({ restorePointId: newest.id, status: "DAMAGED" });

    const damaged = await integrity(newest.id);
    expect(damaged.integrity.status).toBe("DAMAGED");
    expect(damaged.integrity.problems).toContainEqual(expect.objectContaining({ file: vhdPath, block }));
    for (const problem of damaged.integrity.problems) {
      expect(problem.file.startsWith("xo-vm-backups/")).toBe(true);
      expect(problem.detail).not.toContain(f.remoteDir);
    }

    for (const older of deltaPoints.slice(0, 2)) {
      expectSuccess(await verify(older.id));
      expect((await integrity(older.id)).integrity.status).toBe("OK");
    }
    const listed = await f.gql<Rec>("{ restorePoints(filter: { integrity: DAMAGED }) { nodes { id } } }");
    expect(listed.restorePoints.nodes.map((p: Rec) => p.id)).toEqual([newest.id]);
    // The damaged point is no VM's last good restore point.
    const protection = await f.gql<Rec>("{ vmProtection { vm { uuid } lastGoodRestorePoint { id } } }");
    expect(protection.vmProtection.find((row: Rec) => row.vm.uuid === deltaVm.uuid).lastGoodRestorePoint.id).toBe(deltaPoints[1].id);
  });

  it("finds a byte flipped in the middle of an XVA: DAMAGED naming the .xva; the other full stays OK", async () => {
    const newest = fullPoints[1];
    const backup = await backupOf(newest, fullVm.uuid);
    const xvaPath = backup.xvaPath!;
    expect(xvaPath).toMatch(/\.xva$/);
    const { size } = await remote.stat(xvaPath);
    await flipByte(xvaPath, Math.floor(size / 2));

    const run = await verify(newest.id);
    expect(run.status).toBe("FAILURE");
    expect(verifyTasks(run)[0].status).toBe("FAILURE");
    expect(verifyTasks(run)[0].message).toContain(xvaPath);
    const damaged = await integrity(newest.id);
    expect(damaged.integrity.status).toBe("DAMAGED");
    expect(damaged.integrity.problems.some((p: Rec) => p.file === xvaPath)).toBe(true);

    expectSuccess(await verify(fullPoints[0].id));
    expect((await integrity(fullPoints[0].id)).integrity.status).toBe("OK");
  });

  it("the VERIFY job then fails naming the damaged points, verifies the others OK, and reports to its webhook as reportWhen FAILURE asks", async () => {
    const job = (await f.gql<{ jobs: Rec[] }>("{ jobs { id name mode } }")).jobs.find((j) => j.name === "verify prod")!;
    expect(job.mode).toBe("VERIFY");
    const run = await f.runToEnd(job.id);
    expect(run.status).toBe("FAILURE");
    expect(run.error).toMatch(/2 of 5 restore points are damaged and cannot be trusted/);
    expect(run.error).toContain(`${deltaPoints[2].vmName} ${deltaPoints[2].timestamp.replace(/\.\d{3}Z$/, "Z")} on local`);
    expect(run.error).toContain(`${fullPoints[1].vmName} ${fullPoints[1].timestamp.replace(/\.\d{3}Z$/, "Z")} on local`);
    expect(run).toMatchObject({ vmsTotal: 2, vmsFailed: 2, vmsSucceeded: 0 });
    const byPoint = new Map(verifyTasks(run).map((t: Rec) => [t.result.restorePointId, t]));
    for (const point of [deltaPoints[2], fullPoints[1]])
      expect(byPoint.get(point.id)).toMatchObject({ status: "FAILURE", result: { status: "DAMAGED" } });
    for (const point of [deltaPoints[0], deltaPoints[1], fullPoints[0]])
      expect(byPoint.get(point.id)).toMatchObject({ status: "SUCCESS", result: { status: "OK" } });

    const [hook] = await hooks.waitFor("/verify-prod");
    expect(hook.body.run).toMatchObject({ id: run.id, status: "FAILURE", job: { id: job.id, name: "verify prod" } });
    const verdicts = new Map(hook.body.run.restorePoints.map((p: Rec) => [p.id, p.verdict]));
    expect(verdicts).toEqual(
      new Map([
        [deltaPoints[0].id, "OK"],
        [deltaPoints[1].id, "OK"],
        [deltaPoints[2].id, "DAMAGED"],
        [fullPoints[0].id, "OK"],
        [fullPoints[1].id, "DAMAGED"],
      ]),
    );
    expect((await reported(run.id)).deliveries).toEqual([expect.objectContaining({ channel: "webhook", ok: true })]);
  });

  it("rewrites a damaged VHD footer copy only when asked (repair): DAMAGED without, REPAIRED with, OK after", async () => {
    const oldest = deltaPoints[0];
    const backup = await backupOf(oldest, deltaVm.uuid);
    const basePath = backup.disks[0].chain[0];
    await flipByte(basePath, 100); // inside the footer copy at offset 0

    const plain = await verify(oldest.id);
    expect(plain.status).toBe("FAILURE");
    expect(verifyTasks(plain)[0].message).toMatch(/footer copy at offset 0.*; until then, restore from another restore point/);
    const damaged = await integrity(oldest.id);
    expect(damaged.integrity.status).toBe("DAMAGED");
    expect(damaged.integrity.problems).toContainEqual(
      expect.objectContaining({ file: basePath, detail: expect.stringMatching(/footer copy at offset 0/) }),
    );

    const repaired = await verify(oldest.id, true);
    expectSuccess(repaired);
    const [task] = verifyTasks(repaired);
    expect(task.result.status).toBe("REPAIRED");
    expect(task.warnings.some((w: string) => w.startsWith("Repaired: ") && w.includes(basePath))).toBe(true);
    const after = await integrity(oldest.id);
    expect(after.integrity.status).toBe("REPAIRED");
    expect(after.integrity.repaired).toHaveLength(1);
    expect(after.integrity.repaired[0]).toContain(basePath);

    expectSuccess(await verify(oldest.id));
    expect((await integrity(oldest.id)).integrity).toMatchObject({ status: "OK", repaired: [], problems: [] });
  });

  it("waits while retention holds the VM's backups (task message 'waiting: ...'), goes on once they are free, and cancelRun stops a waiting verify", async () => {
    const point = fullPoints[0];
    const waiting = (run: Rec) => verifyTasks(run).some((t: Rec) => t.status === "RUNNING" && /^waiting: /.test(t.message ?? ""));

    const lock = await acquireVmLock(remote, fullVm.uuid, "retention of a test", { maintenance: true });
    let released = false;
    try {
      const runId = await startVerify(point.id);
      await f.waitForRun(runId, waiting);
      await lock.release();
      released = true;
      const run = await f.waitForEnd(runId);
      expectSuccess(run);
      expect(verifyTasks(run)[0].message).toBeNull();
    } finally {
      if (!released) await lock.release();
    }
    const verifiedAt = (await integrity(point.id)).verifiedAt;

    const second = await acquireVmLock(remote, fullVm.uuid, "retention of a test", { maintenance: true });
    try {
      const runId = await startVerify(point.id);
      await f.waitForRun(runId, waiting);
      await f.gql("mutation($id: ID!) { cancelRun(id: $id) { id } }", { id: runId });
      const run = await f.waitForEnd(runId);
      expect(run.status).toBe("CANCELLED");
      expect(verifyTasks(run)[0].status).toBe("CANCELLED");
    } finally {
      await second.release();
    }
    // A cancelled verify leaves the last verdict as it was.
    expect((await integrity(point.id)).verifiedAt).toBe(verifiedAt);
  });

  it("lets an OPERATOR verify; refuses a VIEWER (FORBIDDEN), an unknown id (NOT_FOUND) and a SNAPSHOT (BAD_USER_INPUT, saying why), over HTTP and graphql-ws", async () => {
    const mutation = "mutation($id: ID!) { verifyRestorePoint(id: $id) { id } }";
    const viewer = await createUser(f.server, "verify-viewer", "VIEWER");
    const operator = await createUser(f.server, "verify-operator", "OPERATOR");
    expectError(await f.server.graphql(mutation, { id: fullPoints[0].id }, viewer), "FORBIDDEN");
    const allowed = await f.server.graphql<{ verifyRestorePoint: { id: string } }>(mutation, { id: fullPoints[0].id }, operator);
    expect(allowed.errors).toBeUndefined();
    expectSuccess(await f.waitForEnd(allowed.data!.verifyRestorePoint.id));

    expectError(await f.server.graphql(mutation, { id: randomUUID() }, f.token), "NOT_FOUND");
    expectError(await f.server.graphql(mutation, { id: "not-an-id" }, f.token), "NOT_FOUND");

    const rolling = await f.createJob({
      name: "snapshots",
      mode: "ROLLING_SNAPSHOT",
      selection: { vmUuids: [f.vm("win-fat").uuid] },
      schedules: [{ cron: "0 3 * * *", snapshotRetention: 1 }],
    });
    expectSuccess(await f.runToEnd(rolling.id, rolling.schedules[0].id));
    const [snapshot] = await f.restorePoints(rolling.id, "SNAPSHOT");
    const refused = expectError(await f.server.graphql(mutation, { id: snapshot.id }, f.token), "BAD_USER_INPUT", "id");
    expect(refused.message).toMatch(/is a SNAPSHOT, which lives on a pool, not on a remote: verify reads backups on remotes/);

    const client = createClient({
      url: `${f.server.url.replace(/^http/, "ws")}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${f.token}` },
      retryAttempts: 0,
    });
    try {
      const over = (id: string) =>
        new Promise<Rec>((resolve, reject) => {
          let result: Rec | undefined;
          client.subscribe(
            { query: mutation, variables: { id } },
            { next: (value) => void (result = value), error: reject, complete: () => resolve(result ?? {}) },
          );
        });
      expect((await over(randomUUID())).errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
      const snapshotOverWs = await over(snapshot.id);
      expect(snapshotOverWs.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "id" });
    } finally {
      await client.dispose();
    }
  });

  it("validates VERIFY jobs: remotes needed, no SR, no health check SR; verifyOlderThanDays for VERIFY only, 0 to 3650", async () => {
    const srUuid = (await f.gql<Rec>("{ srs { uuid } }")).srs[0].uuid;
    const createJob =
      "mutation($input: JobInput!) { createJob(input: $input) { id mode settings { verifyOlderThanDays } schedules { exportRetention } } }";
    const base = { name: "verify input", mode: "VERIFY", selection: { vmUuids: [deltaVm.uuid] }, remoteIds: [f.remoteId] };
    const refused = (input: Rec, field: string) =>
      f.server.graphql(createJob, { input: { ...base, ...input } }, f.token).then((answer) => expectError(answer, "BAD_USER_INPUT", field));

    expect((await refused({ srUuids: [srUuid] }, "input.srUuids")).message).toMatch(/touches no SR/);
    expect((await refused({ remoteIds: [] }, "input.remoteIds")).message).toMatch(/remotes whose restore points it verifies/);
    await refused({ settings: { healthCheckSrUuid: srUuid } }, "input.settings.healthCheckSrUuid");
    await refused({ settings: { verifyOlderThanDays: -1 } }, "input.settings.verifyOlderThanDays");
    await refused({ settings: { verifyOlderThanDays: 3651 } }, "input.settings.verifyOlderThanDays");
    await refused(
      { mode: "DELTA", settings: { verifyOlderThanDays: 3 }, schedules: [{ cron: "0 3 * * *", exportRetention: 1 }] },
      "input.settings.verifyOlderThanDays",
    );

    const created = await f.server.graphql<Rec>(
      createJob,
      { input: { ...base, settings: { verifyOlderThanDays: 30 }, schedules: [{ cron: "0 4 * * 0" }] } },
      f.token,
    );
    expect(created.errors).toBeUndefined();
    expect(created.data!.createJob).toMatchObject({
      mode: "VERIFY",
      settings: { verifyOlderThanDays: 30 },
      schedules: [{ exportRetention: 0 }],
    });
    const updated = await f.server.graphql(
      "mutation($id: ID!, $input: JobInput!) { updateJob(id: $id, input: $input) { id } }",
      { id: created.data!.createJob.id, input: { ...base, srUuids: [srUuid] } },
      f.token,
    );
    expectError(updated, "BAD_USER_INPUT", "input.srUuids");
  });
});
