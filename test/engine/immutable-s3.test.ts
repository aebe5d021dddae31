/**
 * Immutability on a real S3 server with Object Lock: Ceph's RADOS Gateway on a one-node Ceph made for the test
 * (test/support/object-lock-s3.ts). Through Cairn's API: an S3 remote with a window of 1 day on a bucket with Object Lock is
 * accepted, and one on a bucket without it is refused saying so; two runs of a DELTA job (a full, then a delta on it) leave
 * every object of each backup in COMPLIANCE retention until that backup's time + 1 day (read with the AWS SDK on the server
 * itself, not through Cairn), which the server enforces (deleting a locked version is refused); the restore points say
 * until when, removeRestorePoint refuses them, and each restores byte-exact (lab.vdi_sha256). What Cairn deletes on such a
 * (versioned) bucket goes with all its versions, leaving no delete marker and no stored old version behind.
 */
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatBackupTimestamp } from "../../server/repository/layout.js";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { objectLockS3SkipReason, startObjectLockS3, type ObjectLockS3 } from "../support/object-lock-s3.js";
import { settleAll, stopAll } from "../support/stop-all.js";

const DAY = 24 * 3_600_000;
const CREATE_REMOTE = `mutation($input: RemoteInput!) { createRemote(input: $input) { id immutabilityDays } }`;
const POINTS = `query($j: ID) { restorePoints(first: 50, filter: { jobId: $j }) { nodes { id timestamp immutableUntil } } }`;

describe.skipIf(objectLockS3SkipReason())("immutable backups on S3 with Object Lock (Ceph RADOS Gateway)", () => {
  let f: BackupFixture;
  let s3: ObjectLockS3;
  let client: S3Client;

  /** The input of createRemote for an S3 remote on `bucket` of the gateway. */
  const remoteInput = (name: string, bucket: string, immutabilityDays: number) => ({
    name,
    kind: "S3",
    location: bucket,
    username: s3.accessKeyId,
    password: s3.secretAccessKey,
    immutabilityDays,
    options: { endpoint: s3.endpoint, region: "us-east-1", forcePathStyle: true },
  });

  beforeAll(async () => {
    await settleAll([
      startObjectLockS3().then((started) => (s3 = started)),
      startBackupFixture({ labDiskMb: 8 }).then((fixture) => (f = fixture)),
    ]);
    client = new S3Client({
      endpoint: s3.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => client?.destroy(),
      () => f?.stop(),
      () => s3?.stop(),
    ),
  );

  it("refuses a window on a bucket of the same server created without Object Lock", async () => {
    await client.send(new CreateBucketCommand({ Bucket: "plain-backups" }));
    const refused = await f.server.graphql(CREATE_REMOTE, { input: remoteInput("plain-s3", "plain-backups", 1) }, f.token);
    expect(refused.errors?.[0]?.message, JSON.stringify(refused.errors)).toMatch(
      /Remote plain-s3 cannot keep backups immutable: the bucket plain-backups does not have Object Lock enabled: create it with Object Lock on/,
    );
    expect(refused.errors?.[0]?.extensions?.field).toBe("input.immutabilityDays");
  });

  it("locks every object of each DELTA backup (a full, then a delta) in COMPLIANCE mode for the window, refuses their removal, and restores them byte-exact", async () => {
    const created = await f.gql(CREATE_REMOTE, { input: remoteInput("vault-s3", s3.bucket, 1) });
    expect(created.createRemote.immutabilityDays).toBe(1);

    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "immutable-s3-delta",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [created.createRemote.id],
      schedules: [{ cron: "0 1 * * *", exportRetention: 3 }],
    });
    // Two runs: a full backup, then a delta on top of it, each locked as it completes.
    const contentAtBackup: string[] = [];
    for (let i = 0; i < 2; i++) {
      if (i > 0) await f.xapi.call("lab.scribble", disk, 1, `immutable-s3-${i}`);
      contentAtBackup.push(String(await f.xapi.call("lab.vdi_sha256", disk)));
      expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    }

    const points = (
      (await f.gql(POINTS, { j: job.id })).restorePoints.nodes as Array<{ id: string; timestamp: string; immutableUntil: string }>
    ).sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
    expect(points).toHaveLength(2);
    for (const point of points) expect(Date.parse(point.immutableUntil)).toBe(Date.parse(point.timestamp) + DAY);

    // Every object in the VM folder, as the server lists it, belongs to one of the backups (its name carries the backup's
    // time): metadata, disk and block checksums, each in COMPLIANCE retention until its own backup's time + 1 day (S3 keeps
    // these dates to the second).
    const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `xo-vm-backups/${vm.uuid}/` }));
    const keys = (listed.Contents ?? []).map((object) => object.Key!);
    const backupOf = (key: string) => points.find((point) => key.includes(formatBackupTimestamp(Date.parse(point.timestamp))));
    for (const point of points) {
      const names = keys.filter((key) => backupOf(key) === point).map((key) => key.replace(/^.*\d{8}T\d{6}Z/, ""));
      expect(names.sort(), `${point.timestamp} in ${keys.join(", ")}`).toEqual([".json", ".vhd", ".vhd.blocksums"]);
    }
    for (const key of keys) {
      const point = backupOf(key);
      expect(point, `${key} belongs to no backup`).toBeDefined();
      const { Retention } = await client.send(new GetObjectRetentionCommand({ Bucket: s3.bucket, Key: key }));
      expect(Retention?.Mode, key).toBe("COMPLIANCE");
      const retainedUntil = Retention?.RetainUntilDate?.getTime() ?? 0;
      expect(
        Math.abs(retainedUntil - Date.parse(point!.immutableUntil)),
        `${key} retained until ${Retention?.RetainUntilDate?.toISOString()}`,
      ).toBeLessThan(1000);
    }

    // The server itself refuses to delete a locked version (a plain DeleteObject would only add a delete marker).
    const metadataKey = keys.find((key) => key.endsWith(".json"))!;
    const { VersionId } = await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: metadataKey }));
    expect(VersionId).toBeDefined();
    const deletion = await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: metadataKey, VersionId })).then(
      () => undefined,
      (error: { name?: string; $metadata?: { httpStatusCode?: number } }) => error,
    );
    expect(deletion?.name).toBe("AccessDenied");
    expect(deletion?.$metadata?.httpStatusCode).toBe(403);
    await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: metadataKey, VersionId }));

    // A bucket with Object Lock is versioned: what Cairn deleted along the way (its lock claims, clock probes, the cache of
    // the VM folder) is gone with every version, not hidden behind a delete marker and still stored.
    const versions = await client.send(new ListObjectVersionsCommand({ Bucket: s3.bucket }));
    expect(versions.DeleteMarkers ?? [], "delete markers left by Cairn's deletes").toEqual([]);
    expect((versions.Versions ?? []).filter((version) => version.IsLatest !== true).map((version) => version.Key)).toEqual([]);

    for (const point of points) {
      const refused = await f.server.graphql(`mutation($id: ID!) { removeRestorePoint(id: $id) }`, { id: point.id }, f.token);
      expect(refused.errors?.[0]?.message, JSON.stringify(refused.errors)).toMatch(
        /db-data's backup of .* is immutable until .*: nobody can remove it before then/,
      );
    }

    // Each point restored onto the lab gives the disk as it was at its run (the delta through its locked base).
    const { srs } = await f.gql<{ srs: { uuid: string; name: string }[] }>("{ srs { uuid name } }");
    for (const [i, point] of points.entries()) {
      const { restoreVm } = await f.gql<{ restoreVm: { id: string } }>("mutation($i: RestoreInput!) { restoreVm(input: $i) { id } }", {
        i: { restorePointId: point.id, srUuid: srs.find((sr) => sr.name === "Local storage")!.uuid },
      });
      const restore = await f.waitForEnd(restoreVm.id);
      expectSuccess(restore);
      const restoredUuid = String(restore.tasks.find((task: { kind: string }) => task.kind === "restore").result.vmUuid);
      await f.xapi.barrier();
      const restoredVm = f.xapi.getObjectByUuid(restoredUuid) as unknown as { $ref: string };
      const [restoredDisk] = f.diskRefs(restoredVm.$ref);
      expect(String(await f.xapi.call("lab.vdi_sha256", restoredDisk)), `point ${i}`).toBe(contentAtBackup[i]);
    }
  }, 300_000);
});
