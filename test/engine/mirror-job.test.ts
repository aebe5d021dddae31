/**
 * MIRROR jobs on real local remotes and a real Postgres (the lab only makes the source backups): a DELTA job backs two VMs
 * up (a full, then deltas) to a source remote; a mirror copies them to a second remote: the same restore points (VM and
 * time, the mirror's job and run), the same bytes; a second run copies nothing, and after one more delta only that delta.
 * A mirror whose retention keeps fewer merges its copies and its newest point restores byte-exact. Encrypted source to a
 * plain target and plain source to an encrypted target copy the same plaintext. A damaged file of the source fails its VM
 * with a message naming it, and nothing half-copied is listed or left on the target. A VM whose source folder a backup is
 * writing is skipped with a warning. An S3 target (s3rver) gets the same points and bytes. With a health check SR, the
 * newest copy is restored from the target, booted and destroyed.
 */
import { mkdirSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VhdFile } from "../../server/formats/vhd/index.js";
import { createRemote } from "../../server/remotes/create-remote.js";
import { acquireVmLock } from "../../server/repository/lock.js";
import type { Remote } from "../../server/remotes/remote.js";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { flipByte } from "../support/flip-byte.js";
import { startRemotePeer } from "../support/remote-peers.js";
import { stopAll } from "../support/stop-all.js";

const POINT_FIELDS = "id kind vmUuid vmName timestamp chainLength job { id } run { id }";
const PASSPHRASE = "Mirror-Otter-passphrase-41c9";

interface Point {
  id: string;
  kind: string;
  vmUuid: string;
  timestamp: string;
  chainLength: number;
  job: { id: string } | null;
  run: { id: string } | null;
}

describe("mirror jobs", () => {
  let f: BackupFixture;
  let labSrUuid: string;
  let db: { uuid: string; ref: string };
  let web: { uuid: string; ref: string };
  let dbDisk: string;
  let delta: { id: string; schedules: { id: string }[] };
  let source: { id: string; dir: string };
  const opened: Remote[] = [];

  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 8 });
    const { srs } = await f.gql<{ srs: { uuid: string; name: string }[] }>("{ srs { uuid name } }");
    labSrUuid = srs.find((sr) => sr.name === "Local storage")!.uuid;
    db = f.vm("db-data");
    web = f.vm("web-ext4");
    [dbDisk] = f.diskRefs(db.ref);
  }, 180_000);
  afterAll(() => stopAll(...opened.map((remote) => () => remote.close()), () => f?.stop()));

  async function localRemote(name: string, encryptionKey?: string): Promise<{ id: string; dir: string }> {
    const dir = join(f.server.dataDir, name.replace(/\W+/g, "-"));
    mkdirSync(dir, { recursive: true });
    const { createRemote: made } = await f.gql<{ createRemote: { id: string } }>(
      "mutation($i: RemoteInput!) { createRemote(input: $i) { id } }",
      { i: { name, kind: "LOCAL", location: dir, ...(encryptionKey ? { encryptionKey } : {}) } },
    );
    return { id: made.id, dir };
  }

  /** The remote as Cairn reads it (decrypting), to compare plaintexts. */
  function reader(dir: string, encryptionKey?: string): Remote {
    const remote = createRemote({ kind: "LOCAL", location: dir, ...(encryptionKey ? { encryptionKey } : {}) });
    opened.push(remote);
    return remote;
  }

  async function pointsOn(remoteId: string): Promise<Point[]> {
    const data = await f.gql<{ restorePoints: { nodes: Point[] } }>(
      `query($f: RestorePointFilter) { restorePoints(first: 100, filter: $f) { nodes { ${POINT_FIELDS} } } }`,
      { f: { remoteId } },
    );
    return [...data.restorePoints.nodes].sort((a, b) => a.vmUuid.localeCompare(b.vmUuid) || a.timestamp.localeCompare(b.timestamp));
  }

  const key = (p: Point) => `${p.vmUuid} ${p.timestamp}`;

  async function mirrorJob(name: string, sourceRemoteId: string, remoteIds: string[], keep: number, vmUuids: string[] = []) {
    return f.createJob({
      name,
      mode: "MIRROR",
      sourceRemoteId,
      selection: { vmUuids },
      remoteIds,
      schedules: [{ cron: "0 4 * * *", exportRetention: keep }],
    });
  }

  const copyTasks = (run: { tasks: { kind: string; name: string }[] }) => run.tasks.filter((t) => t.kind === "copy");

  /** Each data file a point's metadata names, read as plaintext from both sides, must be equal. */
  async function expectSameFiles(from: Remote, to: Remote, vmUuid: string, timestamp: string) {
    const name = `${timestamp.replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "")}.json`;
    const path = `xo-vm-backups/${vmUuid}/${name}`;
    const a = JSON.parse((await from.readFile(path)).toString());
    const b = JSON.parse((await to.readFile(path)).toString());
    const filesOf = (m: { xva?: string; vhds?: Record<string, string> }) =>
      m.xva ? { xva: m.xva } : Object.fromEntries(Object.entries(m.vhds ?? {}).sort());
    const left = filesOf(a);
    const right = filesOf(b);
    expect(Object.keys(right)).toEqual(Object.keys(left));
    for (const ref of Object.keys(left)) {
      const read = async (remote: Remote, relative: string) => remote.readFile(`xo-vm-backups/${vmUuid}/${relative.replace(/^\.\//, "")}`);
      expect((await read(to, right[ref])).equals(await read(from, left[ref])), `${path}: ${right[ref]}`).toBe(true);
    }
  }

  async function restoreHash(pointId: string): Promise<string> {
    const { restoreVm } = await f.gql<{ restoreVm: { id: string } }>("mutation($i: RestoreInput!) { restoreVm(input: $i) { id } }", {
      i: { restorePointId: pointId, srUuid: labSrUuid },
    });
    const run = await f.waitForEnd(restoreVm.id, 300_000);
    expectSuccess(run);
    const vmUuid = String(run.tasks.find((t: { kind: string }) => t.kind === "restore").result.vmUuid);
    await f.xapi.barrier();
    const vm = f.xapi.getObjectByUuid(vmUuid) as unknown as { VBDs: string[] };
    for (const ref of vm.VBDs) {
      const vbd = f.xapi.getObjectByRef(ref) as unknown as { type: string; VDI: string };
      if (vbd.type === "Disk") return String(await f.xapi.call("lab.vdi_sha256", vbd.VDI));
    }
    throw new Error("the restored VM has no disk");
  }

  let scribbles = 0;
  async function deltaRun(job = delta) {
    await f.xapi.call("lab.scribble", dbDisk, 1, `mirror-${scribbles++}`);
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(run);
    return run;
  }

  it("validates a mirror job: a source, targets, not the source among them, no smart selection", async () => {
    source = await localRemote("mirror source");
    const target = await localRemote("mirror validation target");
    const refused = async (input: Record<string, unknown>) => {
      const result = await f.server.graphql(
        "mutation($input: JobInput!) { createJob(input: $input) { id } }",
        { input: { name: "refused mirror", mode: "MIRROR", selection: { vmUuids: [] }, ...input } },
        f.token,
      );
      expect(result.errors, JSON.stringify(input)).toBeDefined();
      return JSON.stringify(result.errors);
    };
    expect(await refused({ remoteIds: [target.id] })).toMatch(/needs a source remote/);
    expect(await refused({ sourceRemoteId: source.id, remoteIds: [] })).toMatch(/needs at least one remote/);
    expect(await refused({ sourceRemoteId: source.id, remoteIds: [source.id, target.id] })).toMatch(/source remote is also a target/);
    expect(await refused({ sourceRemoteId: source.id, remoteIds: [target.id], selection: { smart: { tagsAny: ["prod"] } } })).toMatch(
      /smart selection/,
    );
    const made = await mirrorJob("validation mirror", source.id, [target.id], 1);
    const shown = await f.gql<{ job: { sourceRemote: { id: string; name: string } } }>(
      "query($id: ID!) { job(id: $id) { sourceRemote { id name } } }",
      { id: made.id },
    );
    expect(shown.job.sourceRemote).toEqual({ id: source.id, name: "mirror source" });
    const removal = await f.server.graphql("mutation($id: ID!) { removeRemote(id: $id) }", { id: source.id }, f.token);
    expect(JSON.stringify(removal.errors)).toMatch(/source of mirror job\(s\) validation mirror/);
    await f.gql("mutation($id: ID!) { removeJob(id: $id) }", { id: made.id });
  });

  it("copies every point of the source, byte-identical; a second run copies nothing; a new delta alone", { timeout: 900_000 }, async () => {
    delta = await f.createJob({
      name: "mirror source delta",
      mode: "DELTA",
      selection: { vmUuids: [db.uuid, web.uuid] },
      remoteIds: [source.id],
      settings: { fullInterval: 20 },
      schedules: [{ cron: "0 3 * * *", exportRetention: 10 }],
    });
    await deltaRun();
    await deltaRun();
    const onSource = await pointsOn(source.id);
    expect(onSource).toHaveLength(4);

    const target = await localRemote("mirror target");
    const mirror = await mirrorJob("off-site mirror", source.id, [target.id], 10);
    const first = await f.runToEnd(mirror.id, mirror.schedules[0].id);
    expectSuccess(first);
    expect(first.vmsTotal).toBe(2);
    expect(copyTasks(first)).toHaveLength(4);
    expect(first.transferredBytes).toBeGreaterThan(0);
    const onTarget = await pointsOn(target.id);
    expect(onTarget.map(key)).toEqual(onSource.map(key));
    for (const point of onTarget) {
      expect(point.job?.id).toBe(mirror.id);
      expect(point.run?.id).toBe(first.id);
    }
    const from = reader(source.dir);
    const to = reader(target.dir);
    for (const point of onTarget) await expectSameFiles(from, to, point.vmUuid, point.timestamp);

    const again = await f.runToEnd(mirror.id, mirror.schedules[0].id);
    expectSuccess(again);
    expect(copyTasks(again)).toHaveLength(0);
    expect((await pointsOn(target.id)).map(key)).toEqual(onSource.map(key));

    await deltaRun();
    const newest = (await pointsOn(source.id)).filter((p) => !onSource.some((q) => key(q) === key(p)));
    expect(newest).toHaveLength(2);
    const third = await f.runToEnd(mirror.id, mirror.schedules[0].id);
    expectSuccess(third);
    expect(copyTasks(third)).toHaveLength(2);
    const now = await pointsOn(target.id);
    expect(now.map(key)).toEqual((await pointsOn(source.id)).map(key));
    for (const point of newest) {
      const copy = now.find((p) => key(p) === key(point))!;
      expect(copy.run?.id).toBe(third.id);
      expect(copy.chainLength).toBe(point.chainLength);
      await expectSameFiles(from, to, point.vmUuid, point.timestamp);
    }
  });

  it("skips, with a warning, a VM whose source folder a backup is writing now", { timeout: 300_000 }, async () => {
    const target = await localRemote("mirror target while writing");
    const mirror = await mirrorJob("busy mirror", source.id, [target.id], 10);
    const writing = await acquireVmLock(reader(source.dir), db.uuid, "backup 20261204T000000Z of job a test");
    let run;
    try {
      run = await f.runToEnd(mirror.id, mirror.schedules[0].id);
    } finally {
      await writing.release();
    }
    expectSuccess(run);
    const dbTask = run.tasks.find((t: { kind: string; vmUuid: string | null }) => t.kind === "vm" && t.vmUuid === db.uuid);
    expect(dbTask.status).toBe("SKIPPED");
    expect(JSON.stringify(run.tasks)).toMatch(/db-data is being backed up to mirror source now .*skipped this run/);
    const points = await pointsOn(target.id);
    expect(points.length).toBeGreaterThan(0);
    expect(points.every((p) => p.vmUuid === web.uuid)).toBe(true);
  });

  it("a target keeping fewer points merges its copies; the newest restores byte-exact", { timeout: 900_000 }, async () => {
    await deltaRun();
    const expected = String(await f.xapi.call("lab.vdi_sha256", dbDisk));
    const small = await localRemote("mirror small target");
    const mirror = await mirrorJob("short mirror", source.id, [small.id], 1, [db.uuid]);
    const run = await f.runToEnd(mirror.id, mirror.schedules[0].id);
    expectSuccess(run);
    const merged = run.tasks
      .filter((t: { kind: string }) => t.kind === "retention")
      .reduce((sum: number, t: { result: { merged?: number } | null }) => sum + (t.result?.merged ?? 0), 0);
    expect(merged).toBeGreaterThan(0);
    const kept = await pointsOn(small.id);
    expect(kept).toHaveLength(1);
    const newestOnSource = (await pointsOn(source.id)).filter((p) => p.vmUuid === db.uuid).at(-1)!;
    expect(key(kept[0])).toBe(key(newestOnSource));
    expect(await restoreHash(kept[0].id)).toBe(expected);

    // One more delta: the next run copies it onto the merged chain, which still restores.
    await deltaRun();
    const next = String(await f.xapi.call("lab.vdi_sha256", dbDisk));
    const again = await f.runToEnd(mirror.id, mirror.schedules[0].id);
    expectSuccess(again);
    expect(copyTasks(again)).toHaveLength(1);
    const after = await pointsOn(small.id);
    expect(after).toHaveLength(1);
    expect(await restoreHash(after[0].id)).toBe(next);
  });

  it("encrypted source to a plain target, and a plain source to an encrypted target", { timeout: 900_000 }, async () => {
    const encrypted = await localRemote("encrypted mirror source", PASSPHRASE);
    const encryptedDelta = await f.createJob({
      name: "encrypted source delta",
      mode: "DELTA",
      selection: { vmUuids: [db.uuid] },
      remoteIds: [encrypted.id],
      settings: { fullInterval: 20 },
      schedules: [{ cron: "0 3 * * *", exportRetention: 10 }],
    });
    await deltaRun(encryptedDelta);
    await deltaRun(encryptedDelta);
    const plain = await localRemote("plain copy of encrypted");
    const out = await mirrorJob("decrypting mirror", encrypted.id, [plain.id], 10);
    expectSuccess(await f.runToEnd(out.id, out.schedules[0].id));
    const copied = await pointsOn(plain.id);
    expect(copied.map(key)).toEqual((await pointsOn(encrypted.id)).map(key));
    for (const point of copied) await expectSameFiles(reader(encrypted.dir, PASSPHRASE), reader(plain.dir), point.vmUuid, point.timestamp);
    const someVhd = (await readdir(join(plain.dir, "xo-vm-backups", db.uuid, "vdis", out.id), { recursive: true })).find((n) =>
      String(n).endsWith(".vhd"),
    );
    expect(someVhd, "the copy is plain on the target").toBeDefined();

    const sealed = await localRemote("encrypted copy of plain", PASSPHRASE);
    const into = await mirrorJob("encrypting mirror", source.id, [sealed.id], 10, [web.uuid]);
    expectSuccess(await f.runToEnd(into.id, into.schedules[0].id));
    const sealedPoints = await pointsOn(sealed.id);
    expect(sealedPoints.map(key)).toEqual((await pointsOn(source.id)).filter((p) => p.vmUuid === web.uuid).map(key));
    for (const point of sealedPoints)
      await expectSameFiles(reader(source.dir), reader(sealed.dir, PASSPHRASE), point.vmUuid, point.timestamp);
    const copiedLast = sealedPoints.at(-1)!;
    expect(await restoreHash(copiedLast.id)).toBe(String(await f.xapi.call("lab.vdi_sha256", f.diskRefs(web.ref)[0])));
  });

  it("health-checks the newest point copied, restored from the target", { timeout: 600_000 }, async () => {
    const target = await localRemote("mirror target with health check");
    const mirror = await f.createJob({
      name: "checked mirror",
      mode: "MIRROR",
      sourceRemoteId: source.id,
      selection: { vmUuids: [db.uuid] },
      remoteIds: [target.id],
      settings: { healthCheckSrUuid: labSrUuid },
      schedules: [{ cron: "0 4 * * *", exportRetention: 2 }],
    });
    const run = await f.runToEnd(mirror.id, mirror.schedules[0].id);
    expectSuccess(run);
    const checks = run.tasks.filter((t: { kind: string }) => t.kind === "healthCheck");
    expect(checks).toHaveLength(1);
    expect(checks[0].status).toBe("SUCCESS");
    expect(checks[0].name).toMatch(/mirrored VHD_CHAIN restore point on mirror target with health check/);
    const points = await pointsOn(target.id);
    expect(points).toHaveLength(2);
    const verdict = await f.gql<{ restorePoint: { verification: { status: string } } }>(
      "query($id: ID!) { restorePoint(id: $id) { verification { status } } }",
      { id: points.at(-1)!.id },
    );
    expect(verdict.restorePoint.verification.status).toBe("OK");
  });

  it("mirrors onto an S3 target (s3rver): the same points and bytes, and again only what is new", { timeout: 900_000 }, async () => {
    const peer = await startRemotePeer("S3");
    try {
      const input = peer.input("mirror s3 target");
      const { createRemote: made } = await f.gql<{ createRemote: { id: string } }>(
        "mutation($i: RemoteInput!) { createRemote(input: $i) { id } }",
        { i: input },
      );
      const mirror = await mirrorJob("s3 mirror", source.id, [made.id], 10, [db.uuid]);
      expectSuccess(await f.runToEnd(mirror.id, mirror.schedules[0].id));
      const onS3 = await pointsOn(made.id);
      expect(onS3.map(key)).toEqual((await pointsOn(source.id)).filter((p) => p.vmUuid === db.uuid).map(key));
      const s3 = createRemote({
        kind: "S3",
        location: input.location,
        options: input.options,
        username: input.username,
        password: input.password,
      });
      opened.push(s3);
      for (const point of onS3) await expectSameFiles(reader(source.dir), s3, point.vmUuid, point.timestamp);
      await deltaRun();
      const again = await f.runToEnd(mirror.id, mirror.schedules[0].id);
      expectSuccess(again);
      expect(copyTasks(again)).toHaveLength(1);
    } finally {
      await peer.stop();
    }
  });

  it("a damaged file of the source fails its VM naming the file; nothing half-copied is listed or left", { timeout: 900_000 }, async () => {
    const target = await localRemote("mirror target of damage");
    const mirror = await mirrorJob("damage mirror", source.id, [target.id], 10);
    expectSuccess(await f.runToEnd(mirror.id, mirror.schedules[0].id));
    const before = await pointsOn(target.id);

    await deltaRun();
    const damaged = (await pointsOn(source.id)).filter((p) => p.vmUuid === db.uuid).at(-1)!;
    const stamp = damaged.timestamp.replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");
    const vdis = join(source.dir, "xo-vm-backups", db.uuid, "vdis", delta.id);
    const vhdName = (await readdir(vdis, { recursive: true })).map(String).find((n) => n.endsWith(`${stamp}.vhd`))!;
    const vhdPath = join(vdis, vhdName);
    const vhd = await VhdFile.open(vhdPath);
    let at = -1;
    try {
      for (let i = 0; i < vhd.blockCount && at < 0; i++) if (vhd.hasBlock(i)) at = vhd.dataOffset(i)! + 1000;
    } finally {
      await vhd.close();
    }
    expect(at).toBeGreaterThan(0);
    await flipByte(vhdPath, at);

    const run = await f.runToEnd(mirror.id, mirror.schedules[0].id);
    expect(run.status).toBe("FAILURE");
    expect(run.vmsFailed).toBe(1);
    expect(run.vmsSucceeded).toBe(1);
    const dbTask = run.tasks.find((t: { kind: string; vmUuid: string | null }) => t.kind === "vm" && t.vmUuid === db.uuid);
    expect(dbTask.status).toBe("FAILURE");
    expect(dbTask.message).toMatch(new RegExp(`${stamp}\\.vhd on the source does not read back as it was written.*damaged`));
    const after = await pointsOn(target.id);
    expect(after.some((p) => key(p) === key(damaged))).toBe(false);
    // web-ext4's new point was copied; db-data's was not, and left no file on the target.
    expect(after.length).toBe(before.length + 1);
    const leftovers = (await readdir(join(target.dir, "xo-vm-backups", db.uuid), { recursive: true })).map(String);
    expect(leftovers.filter((n) => n.includes(stamp))).toEqual([]);
  });
});
