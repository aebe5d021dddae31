/**
 * RestorePoint.removal against a real Cairn (Postgres, the lab, the local remote) after real runs: what removeRestorePoint
 * would do, told before it is done and from the chain as it is on the remote. A delta chain of three: the newest one's files
 * are deleted, the middle one and the first (full disks) are each merged with the next backup, which is named; the
 * plan changes nothing, and what disappears when the point is then removed is exactly the files it listed. A full backup's
 * XVA is freed; a snapshot and a replica are destroyed on their pool, named; an unreadable remote is said to be so.
 */
import { readdir, rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { eventually } from "../support/eventually.js";
import { graphql, type ResultOf } from "../support/graphql.js";

const POINTS = graphql(`
  query ($jobId: ID) {
    restorePoints(filter: { jobId: $jobId }) {
      nodes {
        id
        kind
        timestamp
        removal {
          action
          description
          refusal
          deletedFiles
          freedBytes
          dependents
          nextBackupAt
          poolName
          nextRestorePoint {
            id
            timestamp
          }
          merges {
            disk
            parentPath
            childPath
            estimatedBytes
          }
        }
      }
    }
  }
`);

const ONE_REMOVAL = graphql("query ($id: ID!) { restorePoint(id: $id) { id removal { action description freedBytes } } }");

const REMOVE = graphql("mutation ($id: ID!) { removeRestorePoint(id: $id) }");

type Point = ResultOf<typeof POINTS>["restorePoints"]["nodes"][number];

/** "2026-12-03 17:02:11 UTC", as the server names a backup's time. */
const timeWords = (iso: string) => `${new Date(iso).toISOString().slice(0, 19).replace("T", " ")} UTC`;

/** Every file under a folder of the local remote, as paths inside the remote. */
async function filesUnder(root: string, folder: string): Promise<string[]> {
  const entries = await readdir(join(root, folder), { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => `${join(entry.parentPath, entry.name).slice(root.length + 1)}`)
    .sort();
}

describe("RestorePoint.removal: what removing a restore point will do, before it is done", () => {
  let f: BackupFixture;
  let poolName = "";

  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 16 });
    poolName = (await f.gql<{ pools: { name: string }[] }>("{ pools { name } }")).pools[0].name;
  }, 120_000);
  afterAll(() => f?.stop());

  const points = async (jobId: string | null): Promise<Point[]> => (await f.gql(POINTS, { jobId })).restorePoints.nodes;

  it("tells a delta chain apart: the newest is deleted, the others are merged with the backup after them, named", async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "removal chain",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 1 * * *", exportRetention: 10 }],
    });
    for (let i = 0; i < 3; i++) {
      if (i > 0) await f.xapi.call("lab.scribble", disk, 1, `removal-${i}`);
      expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    }
    const vmFolder = `xo-vm-backups/${vm.uuid}`;
    const before = await filesUnder(f.remoteDir, vmFolder);

    // One query for the three: one scan of the VM folder answers them all.
    const [newest, middle, oldest] = await points(job.id);
    expect([newest, middle, oldest].map((p) => p.kind)).toEqual(["VHD_CHAIN", "VHD_CHAIN", "VHD_CHAIN"]);

    expect(newest.removal).toMatchObject({ action: "DELETE_FILES", refusal: null, dependents: 0, merges: [], nextRestorePoint: null });
    expect(newest.removal.freedBytes).toBeGreaterThan(0);
    expect(newest.removal.deletedFiles[0]).toMatch(new RegExp(`^${vmFolder}/.+\\.json$`));
    expect(newest.removal.deletedFiles.some((path) => path.endsWith(".vhd"))).toBe(true);
    expect(newest.removal.description).toContain("no other backup needs");
    expect(newest.removal.description).toContain("remote local");

    expect(middle.removal).toMatchObject({
      action: "MERGE_INTO_NEXT",
      refusal: null,
      dependents: 1,
      freedBytes: null,
      nextRestorePoint: { id: newest.id },
      nextBackupAt: newest.timestamp,
    });
    expect(middle.removal.merges.length).toBeGreaterThan(0);
    for (const merge of middle.removal.merges) expect(merge.estimatedBytes).toBeGreaterThan(0);
    expect(middle.removal.description).toContain(`the next backup, of ${timeWords(newest.timestamp)}, is merged into it`);

    // The first backup of the chain holds the full disks: the middle one is merged into it, and both newer ones depend on it.
    expect(oldest.removal).toMatchObject({ action: "MERGE_INTO_NEXT", dependents: 2, nextRestorePoint: { id: middle.id } });
    expect(oldest.removal.description).toContain("first backup of its delta chain");

    // Telling changed nothing on the remote.
    expect(await filesUnder(f.remoteDir, vmFolder)).toEqual(before);

    // Removing the middle one does what it said: exactly the files it listed disappear, the newer point stays.
    expect(await f.gql(REMOVE, { id: middle.id })).toEqual({ removeRestorePoint: true });
    const after = await filesUnder(f.remoteDir, vmFolder);
    expect(before.filter((path) => !after.includes(path)).sort()).toEqual([...middle.removal.deletedFiles].sort());
    expect(after.filter((path) => !before.includes(path))).toEqual([]);

    // The chain is now oldest <- newest: the first backup's next one is the newest, which alone depends on it.
    const [newestAfter, oldestAfter] = await points(job.id);
    expect([newestAfter.id, oldestAfter.id]).toEqual([newest.id, oldest.id]);
    expect(oldestAfter.removal).toMatchObject({ action: "MERGE_INTO_NEXT", dependents: 1, nextRestorePoint: { id: newest.id } });
    expect(newestAfter.removal.action).toBe("DELETE_FILES");

    // Removing the newest one frees what it said.
    const planned = newestAfter.removal;
    await f.gql(REMOVE, { id: newest.id });
    const last = await filesUnder(f.remoteDir, vmFolder);
    expect(after.filter((path) => !last.includes(path)).sort()).toEqual([...planned.deletedFiles].sort());
  });

  it("frees a full backup's XVA, with its size", async () => {
    const vm = f.vm("win-fat");
    const job = await f.createJob({
      name: "removal full",
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 2 * * *", exportRetention: 2 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const [full] = await points(job.id);
    expect(full.kind).toBe("XVA");
    expect(full.removal).toMatchObject({ action: "DELETE_FILES", refusal: null, dependents: 0 });
    const xva = full.removal.deletedFiles.find((path) => path.endsWith(".xva"));
    expect(xva).toBeDefined();
    const xvaBytes = (await stat(join(f.remoteDir, xva!))).size;
    expect(full.removal.freedBytes).toBeGreaterThanOrEqual(xvaBytes);
    expect(full.removal.description).toMatch(/^The full backup of .+ UTC is deleted from remote local/);
  });

  it("says a snapshot is destroyed with its disks on its pool, named", async () => {
    const vm = f.vm("web-ext4");
    const job = await f.createJob({
      name: "removal rolling",
      mode: "ROLLING_SNAPSHOT",
      selection: { vmUuids: [vm.uuid] },
      schedules: [{ cron: "0 3 * * *", snapshotRetention: 2 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const [snapshot] = await points(job.id);
    expect(snapshot.kind).toBe("SNAPSHOT");
    expect(snapshot.removal).toMatchObject({ action: "DESTROY_ON_POOL", poolName, refusal: null, deletedFiles: [] });
    expect(snapshot.removal.description).toContain(`with its disks on pool ${poolName}`);
  });

  it("says a replica is destroyed on its pool, and that a running one is refused", async () => {
    const vm = f.vm("db-data");
    const { srs } = await f.gql<{ srs: { uuid: string; name: string }[] }>("{ srs { uuid name } }");
    const job = await f.createJob({
      name: "removal dr",
      mode: "DISASTER_RECOVERY",
      selection: { vmUuids: [vm.uuid] },
      srUuids: [srs.find((sr) => sr.name === "Second storage")!.uuid],
      schedules: [{ cron: "0 4 * * *", copyRetention: 1 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const [replica] = await points(job.id);
    expect(replica.kind).toBe("REPLICA");
    expect(replica.removal).toMatchObject({ action: "DESTROY_ON_POOL", poolName, refusal: null });
    expect(replica.removal.description).toContain(`on pool ${poolName}; refused while it runs`);

    // Started (a failover), the replica is refused, and removal says so before anyone tries.
    await f.xapi.barrier();
    const copy = Object.values(f.xapi.objects.all).find(
      (o) => o.$type === "VM" && !o.is_a_snapshot && (o.tags as string[]).includes("cairn:replica"),
    )!;
    await f.xapi.call("VM.remove_from_blocked_operations", copy.$ref, "start");
    await f.xapi.call("VM.start", copy.$ref, false, false);
    const refused = await eventually("the replica seen Running", async () => {
      const [now] = await points(job.id);
      expect(now.removal.refusal).toBe(`The replica ${String(copy.name_label)} is Running: shut it down before removing it.`);
      return now;
    });
    expect(refused.removal.description).toContain(refused.removal.refusal);
    const attempt = await f.server.graphql(REMOVE, { id: replica.id }, f.token);
    expect(attempt.errors?.[0]?.extensions?.code).toBe("CONFLICT");
    await f.xapi.call("VM.hard_shutdown", copy.$ref);
  });

  it("says it cannot tell when the remote cannot be read, and why", async () => {
    const full = (await points(null)).find((point) => point.kind === "XVA");
    expect(full).toBeDefined();
    const moved = `${f.remoteDir}-moved`;
    await rename(f.remoteDir, moved);
    try {
      const { restorePoint } = await f.gql(ONE_REMOVAL, { id: full!.id });
      expect(restorePoint!.removal).toMatchObject({ action: "UNKNOWN", freedBytes: null });
      expect(restorePoint!.removal.description).toMatch(/^Cairn cannot tell what removing it does now: remote local cannot be read \(.+\)/);
    } finally {
      await rename(moved, f.remoteDir);
    }
  });
});
