/**
 * Issue 12's five protections working together over a simulated year (only the server's Date moves: timers run as they do):
 * a DELTA job backs a VM up every 12 days to an encrypted local remote under GFS retention (Europe/Paris, DST changes
 * included); after each backup a MIRROR job copies what is new, under its own GFS retention, to two off-site remotes:
 * an encrypted, immutable S3 remote (Object Lock, on Ceph's RADOS Gateway: test/support/object-lock-s3.ts) and an
 * encrypted, immutable local remote (both 30 days). After the year:
 * - each remote holds exactly what its retention keeps, computed here by hand from the backups' times (the newest N, the
 *   oldest of each month or year of Paris), plus, on the immutable remotes, every backup still inside its window (measured
 *   by the storage's own clock, as a lock is: today's, not the simulated day's; older windows had passed when written);
 * - the oldest and the newest kept points restore byte-exact from both off-site remotes (the lab's own hash of the disk
 *   as it was at that backup);
 * - inside its window, a point's objects on S3 are in COMPLIANCE retention and the server refuses to delete them, and its
 *   files on the local remote carry the immutable attribute and cannot be unlinked, even by root.
 */
import { execFileSync } from "node:child_process";
import { DeleteObjectCommand, GetObjectRetentionCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { mkdirSync, readdirSync, rmSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { objectLockS3SkipReason, startObjectLockS3, type ObjectLockS3 } from "../support/object-lock-s3.js";
import { stopAll } from "../support/stop-all.js";

const DAY = 24 * 3_600_000;
const ZONE = "Europe/Paris";
const STEP_DAYS = 12;
const BACKUPS = 31; // 360 days
const IMMUTABLE_DAYS = 30;

interface Point {
  id: string;
  timestamp: string;
  immutableUntil: string | null;
}

const monthOf = (time: number) =>
  new Intl.DateTimeFormat("en-CA", { timeZone: ZONE, year: "numeric", month: "2-digit" }).format(new Date(time)).slice(0, 7);
const yearOf = (time: number) => monthOf(time).slice(0, 4);

/** What GFS keeps of `times` (ascending): the newest `newest`, and the oldest of each of the last `months` months and `years`
 * years of Paris, counted back from the month (year) of the newest. */
function keptByHand(times: number[], newest: number, months: number, years: number): number[] {
  const kept = new Set(times.slice(-newest));
  const last = times.at(-1)!;
  const monthKeys: string[] = [];
  for (let [y, m] = monthOf(last).split("-").map(Number), i = 0; i < months; i++) {
    monthKeys.push(`${y}-${String(m).padStart(2, "0")}`);
    if (--m === 0) [y, m] = [y - 1, 12];
  }
  const yearKeys = Array.from({ length: years }, (_, i) => String(Number(yearOf(last)) - i));
  for (const key of monthKeys) {
    const oldest = times.find((t) => monthOf(t) === key);
    if (oldest !== undefined) kept.add(oldest);
  }
  for (const key of yearKeys) {
    const oldest = times.find((t) => yearOf(t) === key);
    if (oldest !== undefined) kept.add(oldest);
  }
  return [...kept].sort((a, b) => a - b);
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

describe.skipIf(objectLockS3SkipReason())("a year of encrypted, mirrored, immutable, GFS-kept backups", () => {
  let f: BackupFixture;
  let s3: ObjectLockS3 | undefined;
  let lockedDir = "";

  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 16 });
  }, 180_000);
  afterEach(() => {
    vi.useRealTimers();
  });
  afterAll(() =>
    stopAll(
      async () => {
        // An immutable file left behind would make every later rm of this folder fail.
        if (lockedDir && statSync(lockedDir, { throwIfNoEntry: false })) {
          execFileSync("chattr", ["-R", "-i", lockedDir]);
          rmSync(lockedDir, { recursive: true, force: true });
        }
      },
      () => s3?.stop(),
      () => f?.stop(),
    ),
  );

  async function createRemote(input: Record<string, unknown>): Promise<string> {
    const { createRemote } = await f.gql<{ createRemote: { id: string } }>(
      "mutation($i: RemoteInput!) { createRemote(input: $i) { id } }",
      { i: input },
    );
    return createRemote.id;
  }

  async function pointsOn(remoteId: string, vmUuid: string): Promise<Point[]> {
    const { restorePoints } = await f.gql<{ restorePoints: { nodes: Point[] } }>(
      "query($f: RestorePointFilter) { restorePoints(first: 200, filter: $f) { nodes { id timestamp immutableUntil } } }",
      { f: { remoteId, vmUuid } },
    );
    return [...restorePoints.nodes].sort((a, b) => a.timestamp.localeCompare(b.timestamp));
  }

  async function restoredHash(pointId: string, srUuid: string): Promise<string> {
    const { restoreVm } = await f.gql<{ restoreVm: { id: string } }>("mutation($i: RestoreInput!) { restoreVm(input: $i) { id } }", {
      i: { restorePointId: pointId, srUuid },
    });
    const run = await f.waitForEnd(restoreVm.id, 300_000);
    expectSuccess(run);
    const vmUuid = String(run.tasks.find((t: { kind: string }) => t.kind === "restore").result.vmUuid);
    await f.xapi.barrier();
    const vm = f.xapi.getObjectByUuid(vmUuid) as unknown as { $ref: string; VBDs: string[] };
    for (const ref of vm.VBDs) {
      const vbd = f.xapi.getObjectByRef(ref) as unknown as { type: string; VDI: string };
      if (vbd.type === "Disk") {
        const hash = String(await f.xapi.call("lab.vdi_sha256", vbd.VDI));
        // The restored VM goes: the next restore must not find a VM of the same name and disks around.
        await f.xapi.call("VM.destroy", vm.$ref).catch(() => undefined);
        return hash;
      }
    }
    throw new Error("the restored VM has no disk");
  }

  it("keeps what each retention says, protects what is inside its window, and restores a year-old backup byte-exact", {
    timeout: 3_600_000,
  }, async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const { srs } = await f.gql<{ srs: { uuid: string; name: string }[] }>("{ srs { uuid name } }");
    const srUuid = srs.find((sr) => sr.name === "Local storage")!.uuid;

    const vaultDir = join(f.server.dataDir, "vault");
    lockedDir = join(f.server.dataDir, "offsite-locked");
    mkdirSync(vaultDir, { recursive: true });
    mkdirSync(lockedDir, { recursive: true });
    const vault = await createRemote({ name: "vault", kind: "LOCAL", location: vaultDir, encryptionKey: "vault-passphrase-7d1e-Kestrel" });
    const locked = await createRemote({
      name: "offsite locked",
      kind: "LOCAL",
      location: lockedDir,
      encryptionKey: "offsite-passphrase-92aa-Heron",
      immutabilityDays: IMMUTABLE_DAYS,
    });
    s3 = await startObjectLockS3();
    const cloud = await createRemote({
      name: "offsite s3",
      kind: "S3",
      location: s3.bucket,
      username: s3.accessKeyId,
      password: s3.secretAccessKey,
      options: { endpoint: s3.endpoint, region: "us-east-1", forcePathStyle: true },
      encryptionKey: "cloud-passphrase-5b03-Ibis",
      immutabilityDays: IMMUTABLE_DAYS,
    });

    const backup = await f.createJob({
      name: "year of deltas",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [vault],
      schedules: [{ cron: "0 1 * * *", timezone: ZONE, enabled: false, exportRetention: 2, gfsMonths: 12 }],
    });
    const mirror = await f.createJob({
      name: "year of mirrors",
      mode: "MIRROR",
      sourceRemoteId: vault,
      selection: { vmUuids: [] },
      remoteIds: [cloud, locked],
      schedules: [{ cron: "0 2 * * *", timezone: ZONE, enabled: false, exportRetention: 1, gfsMonths: 6, gfsYears: 1 }],
    });

    // The year ends yesterday: the server's Date only goes back, so sessions and tokens stay valid.
    const last = Math.floor((Date.now() - DAY) / DAY) * DAY + 9 * 3_600_000;
    const first = last - (BACKUPS - 1) * STEP_DAYS * DAY;
    const hashes = new Map<number, string>();
    vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
    for (let i = 0; i < BACKUPS; i++) {
      const at = first + i * STEP_DAYS * DAY;
      vi.setSystemTime(at);
      if (i > 0) await f.xapi.call("lab.scribble", disk, 1 + (i % 3), `year-${i}`);
      hashes.set(at, String(await f.xapi.call("lab.vdi_sha256", disk)));
      expectSuccess(await f.runToEnd(backup.id, backup.schedules[0].id));
      expectSuccess(await f.runToEnd(mirror.id, mirror.schedules[0].id));
    }
    vi.useRealTimers();

    // A point's time is its backup's: the day's time set above plus the seconds the run took to get there.
    const backupTimes = [...hashes.keys()];
    const setTimeOf = (point: Point) => {
      const time = Date.parse(point.timestamp);
      const at = backupTimes.filter((t) => t <= time).at(-1)!;
      expect(time - at, point.timestamp).toBeLessThan(DAY);
      return at;
    };

    const vaultKept = (await pointsOn(vault, vm.uuid)).map(setTimeOf);
    expect(vaultKept.map((t) => new Date(t).toISOString())).toEqual(
      keptByHand(backupTimes, 2, 12, 0).map((t) => new Date(t).toISOString()),
    );
    // The off-site remotes keep what GFS keeps and every backup still inside its window by the storage's own clock (today,
    // not the simulated day), which is what a lock is measured by: the older ones' windows had passed when they were written.
    const now = Date.now();
    const byGfs = keptByHand(backupTimes, 1, 6, 1);
    const insideWindow = backupTimes.filter((t) => t + IMMUTABLE_DAYS * DAY > now);
    expect(insideWindow.length).toBeGreaterThanOrEqual(2);
    const expected = [...new Set([...byGfs, ...insideWindow])].sort((a, b) => a - b).map((t) => new Date(t).toISOString());
    const cloudPoints = await pointsOn(cloud, vm.uuid);
    const lockedPoints = await pointsOn(locked, vm.uuid);
    for (const points of [cloudPoints, lockedPoints]) {
      expect(points.map(setTimeOf).map((t) => new Date(t).toISOString())).toEqual(expected);
      for (const point of points) {
        expect(point.immutableUntil, point.timestamp).not.toBeNull();
        expect(Date.parse(point.immutableUntil!) - Date.parse(point.timestamp)).toBeGreaterThanOrEqual(IMMUTABLE_DAYS * DAY - 1000);
      }
    }

    // On S3: the objects of the newest point are in COMPLIANCE retention until its window's end, enforced by the server.
    const client = new S3Client({
      endpoint: s3.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    try {
      const newest = cloudPoints.at(-1)!;
      const stamp = newest.timestamp.replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");
      const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `xo-vm-backups/${vm.uuid}/` }));
      const metadataKey = (listed.Contents ?? []).map((o) => o.Key!).find((key) => key.endsWith(`/${stamp}.json`))!;
      expect(metadataKey, stamp).toBeDefined();
      const { Retention } = await client.send(new GetObjectRetentionCommand({ Bucket: s3.bucket, Key: metadataKey }));
      expect(Retention?.Mode).toBe("COMPLIANCE");
      expect(Math.abs(Retention!.RetainUntilDate!.getTime() - Date.parse(newest.immutableUntil!))).toBeLessThan(1000);
      const { VersionId } = await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: metadataKey }));
      const refused = await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: metadataKey, VersionId })).then(
        () => undefined,
        (error: { name?: string }) => error.name,
      );
      expect(refused).toBe("AccessDenied");
    } finally {
      client.destroy();
    }

    // On the local remote: the files of a point inside its window cannot be unlinked, even by root.
    const protectedFiles = filesUnder(lockedDir).filter((file) =>
      execFileSync("lsattr", ["-d", file]).toString().slice(0, 20).includes("i"),
    );
    expect(protectedFiles.length).toBeGreaterThan(0);
    expect(() => unlinkSync(protectedFiles[0])).toThrow(/EPERM|operation not permitted/i);

    // A year-old backup and the newest, from both off-site remotes, byte-exact.
    for (const points of [cloudPoints, lockedPoints]) {
      for (const point of [points[0], points.at(-1)!]) {
        expect(await restoredHash(point.id, srUuid), point.timestamp).toBe(hashes.get(setTimeOf(point)));
      }
    }
    expect(Date.parse(cloudPoints[0].timestamp)).toBeLessThan(now - 300 * DAY);
  });
});
