/**
 * GFS retention in real runs of a DELTA job on a LOCAL remote: the days are made by moving the server's Date (only Date:
 * timers run as they do), so that one schedule's backups fall on three days of Europe/Paris. With exportRetention 1 and
 * gfsDays 2, the oldest backup of yesterday is a delta whose parents are removed: it must still restore byte-exact, as must
 * the newest, whose removed parent lay between the two.
 */
import { createHash } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { openBackupDisk } from "../../server/repository/chain-source.js";
import { scanRepository } from "../../server/repository/scanner.js";
import { createRemote } from "../../server/remotes/create-remote.js";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { graphql } from "../support/graphql.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const POINTS = graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { id timestamp chainLength } } }");

describe("GFS retention of a DELTA job", () => {
  let f: BackupFixture;
  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 16 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  afterAll(() => f?.stop());

  it("keeps the oldest backup of each of the last 2 days besides the newest, and each kept point restores byte-exact", async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "gfs-delta",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 1 * * *", timezone: "Europe/Paris", exportRetention: 1, gfsDays: 2 }],
    });
    const scheduleId = job.schedules[0].id;
    // Three days of Paris, a few days back: 08:00 and 09:00 UTC are the same Paris day (10:00 and 11:00, or 09:00 and 10:00).
    const firstDay = Math.floor((Date.now() - 5 * DAY) / DAY) * DAY;
    const times = [
      firstDay + 8 * HOUR,
      firstDay + 9 * HOUR,
      firstDay + DAY + 8 * HOUR,
      firstDay + DAY + 9 * HOUR,
      firstDay + 2 * DAY + 8 * HOUR,
    ];
    const hashes: string[] = [];
    vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
    for (const [i, time] of times.entries()) {
      vi.setSystemTime(time);
      if (i > 0) await f.xapi.call("lab.scribble", disk, 1, `gfs-${i}`);
      hashes.push(String(await f.xapi.call("lab.vdi_sha256", disk)));
      expectSuccess(await f.runToEnd(job.id, scheduleId));
    }
    vi.useRealTimers();

    // Kept: the oldest of the second day (a delta on the first day's two backups) and the newest (third day).
    const listed = (await f.gql(POINTS, { j: job.id })).restorePoints.nodes;
    const kept = listed.map((point) => Date.parse(point.timestamp));
    expect(kept).toHaveLength(2);
    expect(kept[0]).toBeGreaterThanOrEqual(times[4]);
    expect(kept[0]).toBeLessThan(times[4] + HOUR);
    expect(kept[1]).toBeGreaterThanOrEqual(times[2]);
    expect(kept[1]).toBeLessThan(times[3]);

    const remote = createRemote({ kind: "LOCAL", location: f.remoteDir });
    await remote.open();
    try {
      const scan = await scanRepository(remote, { vmUuid: vm.uuid });
      expect(scan.problems).toEqual([]);
      expect(scan.backups.map((backup) => backup.timestamp).sort((a, b) => b - a)).toEqual(kept);
      for (const [timestamp, expected] of [
        [kept[0], hashes[4]],
        [kept[1], hashes[2]],
      ] as const) {
        const backup = scan.backups.find((b) => b.timestamp === timestamp)!;
        const chain = await openBackupDisk(remote, backup.disks[0]);
        const hash = createHash("sha256");
        for (let offset = 0; offset < chain.virtualSize; offset += 4 << 20)
          hash.update(await chain.read(offset, Math.min(4 << 20, chain.virtualSize - offset)));
        await chain.close();
        expect(hash.digest("hex"), new Date(timestamp).toISOString()).toBe(expected);
      }
      // Both were deltas when written. The older one's ancestors were merged into it (a chain of one VHD); the newest one's
      // removed parent was merged into it, so it now builds on the older kept one (a chain of two).
      const chainLength = (timestamp: number) => scan.backups.find((b) => b.timestamp === timestamp)!.disks[0].chain.length;
      expect([chainLength(kept[0]), chainLength(kept[1])]).toEqual([2, 1]);
    } finally {
      await remote.close();
    }
  });
});
