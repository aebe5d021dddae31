import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { Remote } from "../../server/remotes/remote.js";
import { applyRetention } from "../../server/repository/retention.js";
import { scanRepository } from "../../server/repository/scanner.js";
import {
  HOUR,
  MiB,
  SimulatedDisk,
  T0,
  filesUnder,
  readDisk,
  tempRemote,
  withoutUpdatesInPlace,
  writeDeltaBackup,
} from "./support/fixtures.js";

class SimulatedCrash extends Error {}

interface History {
  vmUuid: string;
  jobId: string;
  scheduleId: string;
  /** timestamp -> VDI uuid -> content at that backup */
  contents: Map<number, Map<string, Buffer>>;
  disks: SimulatedDisk[];
}

function newHistory(seed: number, diskCount = 1): History {
  return {
    vmUuid: randomUUID(),
    jobId: randomUUID(),
    scheduleId: randomUUID(),
    contents: new Map(),
    disks: Array.from({ length: diskCount }, (_, i) => new SimulatedDisk(randomUUID(), (8 + 4 * i) * MiB, seed + i)),
  };
}

/** Backup number n of a delta job with fullInterval 4: 0, 4, 8... are full. */
async function backup(remote: Remote, history: History, n: number): Promise<number> {
  const timestamp = T0 + n * HOUR;
  if (n > 0) for (const disk of history.disks) disk.scribble(6);
  const contents = await writeDeltaBackup(remote, { ...history, timestamp, kind: n % 4 === 0 ? "full" : "delta" });
  history.contents.set(timestamp, contents);
  return timestamp;
}

/** Scans the VM and checks every listed backup reads, disk by disk, exactly what it held when written. */
async function expectRestorable(remote: Remote, history: History): Promise<number[]> {
  const { backups, problems } = await scanRepository(remote, { vmUuid: history.vmUuid });
  expect(problems.filter((p) => !p.includes("interrupted merge"))).toEqual([]);
  for (const found of backups) {
    const expected = history.contents.get(found.timestamp);
    expect(expected, `backup ${found.metadataPath} was never written`).toBeDefined();
    expect(found.disks).toHaveLength(history.disks.length);
    for (const disk of found.disks) {
      const bytes = await readDisk(remote, disk.chain);
      expect(
        bytes.equals(expected?.get(disk.vdiUuid) as Buffer),
        `${found.metadataPath} disk ${disk.vdiUuid} (chain ${disk.chain.join(" <- ")})`,
      ).toBe(true);
    }
  }
  return backups.map((b) => b.timestamp).sort((a, b) => a - b);
}

describe("applyRetention", async () => {
  it("keeps 3 of 7 delta backups (a full every 4), merging removed deltas into the oldest kept one: each kept backup reads byte for byte what was backed up", async () => {
    const remote = await tempRemote();
    const history = newHistory(11, 2);
    const times: number[] = [];
    const merges: string[] = [];
    for (let n = 0; n < 7; n++) {
      times.push(await backup(remote, history, n));
      const result = await applyRetention(remote, { ...history, keep: 3 });
      expect(result.problems).toEqual([]);
      merges.push(...result.merged.map((m) => `${m.parent} -> ${m.child}`));
      expect(await expectRestorable(remote, history)).toEqual(times.slice(-3));
    }
    // backup 0 merged into 1, 1 into 2, 2 into 3 (per disk); backup 3 then goes whole: the full of backup 4 needs none of it
    expect(merges).toHaveLength(6);
    const vhds = (await filesUnder(remote, `xo-vm-backups/${history.vmUuid}/vdis`)).filter((f) => f.endsWith(".vhd"));
    expect(vhds).toHaveLength(6); // 3 backups x 2 disks: nothing left behind
    expect((await filesUnder(remote)).filter((f) => f.endsWith(".json") || f.endsWith(".lock"))).toHaveLength(3);
  });

  it("removes a whole chain of old deltas at once by merging them all into the oldest kept delta", async () => {
    const remote = await tempRemote();
    const history = newHistory(23);
    const times: number[] = [];
    for (let n = 0; n < 4; n++) times.push(await backup(remote, history, n === 0 ? 0 : n * 4 + 1)); // full, then deltas only
    const result = await applyRetention(remote, { ...history, keep: 1 });
    expect(result.deleted).toHaveLength(3);
    expect(result.merged).toHaveLength(3);
    expect(await expectRestorable(remote, history)).toEqual(times.slice(-1));
  });

  for (const crashAt of ["planned", "footer-moved", "block", "identity", "renamed"] as const) {
    it(`resumes a merge that crashed at its "${crashAt}" step: every backup reads right after the crash and after the next call`, async () => {
      const remote = await tempRemote();
      const history = newHistory(31 + crashAt.length);
      const times: number[] = [];
      for (let n = 0; n < 4; n++) times.push(await backup(remote, history, n));
      let crashed = false;
      const first = await applyRetention(remote, {
        ...history,
        keep: 2,
        onMergeStep: ({ step }) => {
          if (step.kind === crashAt && !crashed) {
            crashed = true;
            throw new SimulatedCrash(`crash at ${crashAt}`);
          }
        },
      });
      expect(crashed).toBe(true);
      expect(first.deleted).toHaveLength(2);
      expect(first.problems.join("\n")).toContain(`crash at ${crashAt}`);
      expect(await expectRestorable(remote, history)).toEqual(times.slice(-2));

      const second = await applyRetention(remote, { ...history, keep: 2 });
      expect(second.problems).toEqual([]);
      expect(second.deleted).toEqual([]);
      expect(second.merged.length).toBeGreaterThan(0);
      expect(await expectRestorable(remote, history)).toEqual(times.slice(-2));
      const left = await filesUnder(remote, `xo-vm-backups/${history.vmUuid}`);
      expect(left.filter((f) => f.endsWith(".vhd"))).toHaveLength(2);
      expect(left.filter((f) => f.includes(".merge.json"))).toEqual([]);
    });
  }

  it("finishes a merge whose state file was lost after its identity step (two VHDs with one uuid), instead of being stuck", async () => {
    const remote = await tempRemote();
    const history = newHistory(37);
    const times: number[] = [];
    for (let n = 0; n < 3; n++) times.push(await backup(remote, history, n));
    let crashed = false;
    await applyRetention(remote, {
      ...history,
      keep: 2,
      onMergeStep: ({ step }) => {
        if (step.kind === "identity" && !crashed) {
          crashed = true;
          throw new SimulatedCrash("crash right after the identity step");
        }
      },
    });
    expect(crashed).toBe(true);
    const states = (await filesUnder(remote)).filter((f) => f.endsWith(".merge.json"));
    expect(states).toHaveLength(1);
    await remote.delete(states[0]); // the state file is lost (a disk that dropped it, a hand that deleted it)
    expect(await expectRestorable(remote, history)).toEqual(times.slice(-2));

    const next = await applyRetention(remote, { ...history, keep: 2 });
    expect(next.problems).toEqual([]);
    expect(next.merged).toEqual([expect.objectContaining({ resumed: true })]);
    expect(await expectRestorable(remote, history)).toEqual(times.slice(-2));
    const left = await filesUnder(remote, `xo-vm-backups/${history.vmUuid}`);
    expect(left.filter((f) => f.endsWith(".vhd"))).toHaveLength(2);
    expect(left.filter((f) => f.includes(".merge") || f.includes(".merging"))).toEqual([]);
  });

  it("counts per schedule and keeps VHDs another schedule of the same job still needs", async () => {
    const remote = await tempRemote();
    const history = newHistory(41);
    const other = { ...history, scheduleId: randomUUID() };
    const t0 = await backup(remote, other, 0); // the other schedule's full
    const mine: number[] = [];
    for (let n = 1; n < 4; n++) mine.push(await backup(remote, history, n));
    const result = await applyRetention(remote, { ...history, keep: 1 });
    expect(result.deleted).toHaveLength(2);
    expect(await expectRestorable(remote, history)).toEqual([t0, mine[2]]);
  });

  it("on a remote that cannot merge, removes the metadata but keeps (and reports) the VHDs kept backups build on, never breaking a chain", async () => {
    const local = await tempRemote();
    const history = newHistory(53);
    const times: number[] = [];
    for (let n = 0; n < 3; n++) times.push(await backup(local, history, n));
    const remote = withoutUpdatesInPlace(local);
    const result = await applyRetention(remote, { ...history, keep: 1 });
    expect(result.deleted).toHaveLength(2);
    expect(result.merged).toEqual([]);
    expect(result.problems.join("\n")).toMatch(/merges are not available on this S3 remote/);
    expect(await expectRestorable(remote, history)).toEqual(times.slice(-1));
  });

  it("full backups: deletes the metadata then the XVA of each backup that falls out", async () => {
    const remote = await tempRemote();
    const history = newHistory(71);
    const { beginBackup } = await import("../../server/repository/backup-writer.js");
    const { Readable } = await import("node:stream");
    for (let n = 0; n < 4; n++) {
      const writer = await beginBackup(remote, { vmUuid: history.vmUuid, timestamp: T0 + n * HOUR, mode: "full", jobId: history.jobId });
      await writer.writeXva(Readable.from([Buffer.alloc(1024, n)]));
      await writer.commit({ scheduleId: history.scheduleId, vm: {}, vmSnapshot: {}, cairn: { quiesced: false, compression: "zstd" } });
    }
    const result = await applyRetention(remote, { ...history, keep: 2 });
    expect(result.deleted).toEqual(
      ["20250131T220003Z.json", "20250131T230003Z.json"].map((name) => `xo-vm-backups/${history.vmUuid}/${name}`),
    );
    expect(result.deletedFiles).toHaveLength(2);
    expect(await filesUnder(remote, `xo-vm-backups/${history.vmUuid}`)).toEqual([
      "20250201T000003Z.json",
      "20250201T000003Z.xva",
      "20250201T010003Z.json",
      "20250201T010003Z.xva",
    ]);
  });

  it("deletes the temporaries a failed write left, however young, and calls onRemoving before the first metadata goes", async () => {
    const remote = await tempRemote();
    const history = newHistory(81);
    for (let n = 0; n < 3; n++) await backup(remote, history, n);
    const [disk] = await filesUnder(remote, `xo-vm-backups/${history.vmUuid}/vdis`);
    const diskFolder = `xo-vm-backups/${history.vmUuid}/vdis/${disk.split("/").slice(0, 2).join("/")}`;
    // What a write cut mid-way leaves when it cannot delete its own temporary: written a moment ago.
    const leftovers = [
      `${diskFolder}/.20250201T010003Z.vhd.tmp-0123456789abcdef`,
      `xo-vm-backups/${history.vmUuid}/.20250201T010003Z.json.tmp-fedcba9876543210`,
    ];
    for (const path of leftovers) await remote.writeFile(path, "partial");
    const unlisted: string[][] = [];
    const result = await applyRetention(remote, {
      ...history,
      keep: 2,
      onRemoving: async (paths) => {
        // Called before any metadata is deleted: each is still there.
        for (const path of paths) await remote.stat(path);
        unlisted.push(paths);
      },
    });
    expect(result.problems).toEqual([]);
    expect(unlisted).toEqual([result.deleted]);
    expect(result.deletedFiles).toEqual(expect.arrayContaining(leftovers));
    const left = await filesUnder(remote, `xo-vm-backups/${history.vmUuid}`);
    expect(left.filter((file) => file.includes(".tmp-"))).toEqual([]);
    expect(await expectRestorable(remote, history)).toEqual([T0 + HOUR, T0 + 2 * HOUR]);
  });

  it("refuses while a writer holds the VM's lock", async () => {
    const remote = await tempRemote();
    const history = newHistory(61);
    await backup(remote, history, 0);
    const { beginBackup } = await import("../../server/repository/backup-writer.js");
    const writer = await beginBackup(remote, { vmUuid: history.vmUuid, timestamp: T0 + 5 * HOUR, mode: "delta", jobId: history.jobId });
    await expect(applyRetention(remote, { ...history, keep: 1 })).rejects.toThrow(
      /LOCKED: cannot lock the backups of VM .*: backup .*.* holds the backups/,
    );
    await writer.abort();
  });
});
