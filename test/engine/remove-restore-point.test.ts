import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBackupDisk } from "../../server/repository/chain-source.js";
import { scanRepository } from "../../server/repository/scanner.js";
import { createRemote } from "../../server/remotes/create-remote.js";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { graphql } from "../support/graphql.js";

describe("removeRestorePoint", () => {
  let f: BackupFixture;
  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 16 });
  });
  afterAll(() => f?.stop());

  it("removes a delta in the middle of a chain, and the newer point still restores its snapshot's bytes", async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "chain",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 1 * * *", exportRetention: 10 }],
    });
    const hashes: string[] = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) await f.xapi.call("lab.scribble", disk, 1, `remove-${i}`);
      hashes.push(String(await f.xapi.call("lab.vdi_sha256", disk)));
      expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    }
    const listed = await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { id timestamp } } }"), { j: job.id });
    const [newest, middle, oldest] = listed.restorePoints.nodes;
    expect(await f.gql(graphql("mutation($id: ID!) { removeRestorePoint(id: $id) }"), { id: middle.id })).toEqual({
      removeRestorePoint: true,
    });

    const after = await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { id chainLength } } }"), {
      j: job.id,
    });
    expect(after.restorePoints.nodes.map((n: { id: string }) => n.id)).toEqual([newest.id, oldest.id]);
    const remote = createRemote({ kind: "LOCAL", location: f.remoteDir });
    await remote.open();
    const scan = await scanRepository(remote, { vmUuid: vm.uuid });
    expect(scan.problems).toEqual([]);
    expect(scan.backups).toHaveLength(2);
    for (const [backup, expected] of [
      [scan.backups.find((b) => b.timestamp === Date.parse(newest.timestamp))!, hashes[2]],
      [scan.backups.find((b) => b.timestamp === Date.parse(oldest.timestamp))!, hashes[0]],
    ] as const) {
      const chain = await openBackupDisk(remote, backup.disks[0]);
      const hash = createHash("sha256");
      for (let offset = 0; offset < chain.virtualSize; offset += 4 << 20)
        hash.update(await chain.read(offset, Math.min(4 << 20, chain.virtualSize - offset)));
      await chain.close();
      expect(hash.digest("hex")).toBe(expected);
    }
    await remote.close();
  });

  it("destroys the snapshot behind a SNAPSHOT point, with its disks", async () => {
    const vm = f.vm("win-fat");
    const job = await f.createJob({
      name: "rolling",
      mode: "ROLLING_SNAPSHOT",
      selection: { vmUuids: [vm.uuid] },
      schedules: [{ cron: "0 2 * * *", snapshotRetention: 2 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const points = await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { id } } }"), { j: job.id });
    await f.xapi.barrier();
    const before = await f.jobSnapshots(job.id, vm.uuid);
    expect(before).toHaveLength(1);
    await f.gql("mutation($id: ID!) { removeRestorePoint(id: $id) }", { id: points.restorePoints.nodes[0].id });
    await f.xapi.barrier();
    expect(await f.jobSnapshots(job.id, vm.uuid)).toHaveLength(0);
    const left = await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { totalCount } }"), { j: job.id });
    expect(left.restorePoints.totalCount).toBe(0);
  });
});
