import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBackupDisk } from "../../server/repository/chain-source.js";
import { createRemote } from "../../server/remotes/create-remote.js";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { graphql } from "../support/graphql.js";

const DISK_MB = 32;

async function hashChain(chain: Awaited<ReturnType<typeof openBackupDisk>>): Promise<string> {
  const hash = createHash("sha256");
  const step = 4 * 1024 * 1024;
  for (let offset = 0; offset < chain.virtualSize; offset += step)
    hash.update(await chain.read(offset, Math.min(step, chain.virtualSize - offset)));
  return hash.digest("hex");
}

describe("DELTA backups against the lab", () => {
  let f: BackupFixture;
  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: DISK_MB });
  });
  afterAll(() => f?.stop());

  it("keeps exactly exportRetention restore points over 7 runs, each restoring the bytes of its snapshot, with deltas sized by the changes", async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "delta",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      settings: { fullInterval: 4 },
      schedules: [{ cron: "0 3 * * *", exportRetention: 3 }],
    });
    const hashAtRun = new Map<string, string>();
    const bytesAtRun: number[] = [];
    for (let i = 0; i < 7; i++) {
      if (i > 0) await f.xapi.call("lab.scribble", disk, 2, `run-${i}`);
      const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expectSuccess(run);
      hashAtRun.set(run.id, expected);
      bytesAtRun.push(run.transferredBytes);
      const exports = run.tasks.filter((t: { kind: string }) => t.kind === "export");
      // Runs 0 and 4 are fulls (first backup, then fullInterval 4); the others are deltas.
      expect(
        exports[0].result.differencing,
        `run ${i}: ${JSON.stringify(run.tasks.flatMap((t: { warnings: string[] }) => t.warnings))}`,
      ).toBe(!(i === 0 || i === 4));
    }
    // A delta of 2 changed 2 MiB blocks moves about 4 MiB, a full the whole allocated disk.
    expect(bytesAtRun[1]).toBeLessThan(6 * 1024 * 1024);
    expect(bytesAtRun[0]).toBeGreaterThan(bytesAtRun[1] * 3);

    const data = await f.gql(
      graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { totalCount nodes { id kind chainLength } } }"),
      { j: job.id },
    );
    expect(data.restorePoints.totalCount).toBe(3);
    const remote = createRemote({ kind: "LOCAL", location: f.remoteDir });
    await remote.open();
    const { scanRepository } = await import("../../server/repository/scanner.js");
    const scan = await scanRepository(remote, { vmUuid: vm.uuid });
    expect(scan.problems).toEqual([]);
    expect(scan.backups).toHaveLength(3);
    for (const point of data.restorePoints.nodes) expect(point.kind).toBe("VHD_CHAIN");
    // Each kept point hashes as the snapshot of the run that made it.
    const points = await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { timestamp run { id } } } }"), {
      j: job.id,
    });
    for (const point of points.restorePoints.nodes) {
      const backup = scan.backups.find((b) => b.timestamp === Date.parse(point.timestamp))!;
      const chain = await openBackupDisk(remote, backup.disks[0]);
      try {
        expect(await hashChain(chain)).toBe(hashAtRun.get(point.run!.id));
      } finally {
        await chain.close();
      }
    }
    await remote.close();
  });
});
