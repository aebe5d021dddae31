import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { beginBackup } from "../../server/repository/backup-writer.js";
import { formatBackupTimestamp, parseBackupTimestamp } from "../../server/repository/layout.js";
import { parseBackupMetadata } from "../../server/repository/metadata.js";
import { scanRepository } from "../../server/repository/scanner.js";
import { HOUR, MiB, SimulatedDisk, T0, readDisk, tempRemote, vmRecord, withoutLocalFiles, writeDeltaBackup } from "./support/fixtures.js";

const JOB = randomUUID();
const SCHEDULE = randomUUID();

describe("layout and metadata", () => {
  it("names files with XO's UTC %Y%m%dT%H%M%SZ and reads the names back", () => {
    expect(formatBackupTimestamp(T0)).toBe("20250131T220003Z");
    expect(formatBackupTimestamp(new Date("2024-02-29T00:00:00.999Z"))).toBe("20240229T000000Z");
    expect(parseBackupTimestamp("20250131T220003Z.json")).toBe(T0);
    expect(parseBackupTimestamp("20250231T220003Z.json")).toBeUndefined(); // no 31 February
    expect(parseBackupTimestamp("cache.json.gz")).toBeUndefined();
  });

  it("reads metadata written by Xen Orchestra (no cairn key)", () => {
    const xo = {
      jobId: JOB,
      mode: "delta",
      scheduleId: SCHEDULE,
      timestamp: T0,
      version: "2.0.0",
      vm: {},
      vmSnapshot: {},
      size: 1,
      vbds: {},
      vdis: {},
      vifs: {},
      vtpms: [],
      vhds: { "OpaqueRef:1": `vdis/${JOB}/x/20250131T220003Z.vhd` },
      isVhdDifferencing: { "OpaqueRef:1": false },
    };
    expect(parseBackupMetadata(JSON.stringify(xo), "a.json")).toEqual(xo);
  });

  it("refuses metadata of an unknown major formatVersion, saying which and what to do", () => {
    const future = {
      jobId: JOB,
      mode: "full",
      scheduleId: SCHEDULE,
      timestamp: T0,
      version: "2.0.0",
      vm: {},
      vmSnapshot: {},
      xva: "./a.xva",
      cairn: { formatVersion: 99, whatever: true },
    };
    expect(() => parseBackupMetadata(JSON.stringify(future), "xo-vm-backups/v/20250131T220003Z.json")).toThrow(
      /UNSUPPORTED_FORMAT_VERSION: xo-vm-backups\/v\/20250131T220003Z\.json has cairn\.formatVersion 99, but this Cairn reads only formatVersion 1 and 2: .*upgrade Cairn/,
    );
    expect(() => parseBackupMetadata(JSON.stringify({ ...future, cairn: undefined, version: "3.0.0" }), "b.json")).toThrow(
      /UNSUPPORTED_FORMAT_VERSION: b\.json has version "3\.0\.0"/,
    );
  });

  it("names the field that is wrong", () => {
    expect(() =>
      parseBackupMetadata(
        JSON.stringify({ mode: "delta", jobId: JOB, scheduleId: SCHEDULE, timestamp: T0, version: "2.0.0", vm: {}, vmSnapshot: {} }),
        "c.json",
      ),
    ).toThrow(/INVALID_METADATA: c\.json: field vhds must be an object of relative paths and is missing/);
    expect(() => parseBackupMetadata("{not json", "d.json")).toThrow(/INVALID_METADATA: d\.json is not JSON/);
  });
});

describe("scanRepository", async () => {
  it("finds exactly the committed backups, ignoring temporary files, and reports incomplete backups and broken chains", async () => {
    const remote = await tempRemote();
    // VM A: a full then two deltas, all fine
    const vmA = randomUUID();
    const diskA = new SimulatedDisk(randomUUID(), 8 * MiB, 1);
    const contents = new Map<number, Buffer>();
    for (let n = 0; n < 3; n++) {
      if (n > 0) diskA.scribble(5);
      const written = await writeDeltaBackup(remote, {
        vmUuid: vmA,
        jobId: JOB,
        scheduleId: SCHEDULE,
        timestamp: T0 + n * HOUR,
        disks: [diskA],
        kind: n === 0 ? "full" : "delta",
      });
      contents.set(T0 + n * HOUR, written.get(diskA.vdiUuid) as Buffer);
    }
    // an interrupted write: temporary names only, no metadata
    await remote.writeFile(`xo-vm-backups/${vmA}/.20250201T000000Z.xva.tmp-0123456789abcdef`, "partial");
    await remote.writeFile(`xo-vm-backups/${vmA}/vdis/${JOB}/${diskA.vdiUuid}/.20250201T000000Z.vhd.tmp-fedcba9876543210`, "partial");
    // an uncommitted backup: data under final names, no metadata (a writer that died)
    const dead = await beginBackup(remote, { vmUuid: vmA, timestamp: T0 + 9 * HOUR, mode: "full", jobId: JOB, lock: { autoRenew: false } });
    await dead.writeXva(Readable.from([Buffer.alloc(1024)]));

    // VM B: a full XVA backup whose XVA then vanished, and a delta whose parent VHD vanished
    const vmB = randomUUID();
    const full = await beginBackup(remote, { vmUuid: vmB, timestamp: T0, mode: "full", jobId: JOB });
    const xva = await full.writeXva(Readable.from([Buffer.alloc(2048)]));
    await full.commit({ scheduleId: SCHEDULE, vm: vmRecord(vmB, "db-01"), vmSnapshot: {}, cairn: { quiesced: true, compression: "zstd" } });
    await remote.delete(xva.remotePath);
    const diskB = new SimulatedDisk(randomUUID(), 8 * MiB, 2);
    await writeDeltaBackup(remote, { vmUuid: vmB, jobId: JOB, scheduleId: SCHEDULE, timestamp: T0 + HOUR, disks: [diskB], kind: "full" });
    diskB.scribble(3);
    await writeDeltaBackup(remote, {
      vmUuid: vmB,
      jobId: JOB,
      scheduleId: SCHEDULE,
      timestamp: T0 + 2 * HOUR,
      disks: [diskB],
      kind: "delta",
    });
    await remote.delete(`xo-vm-backups/${vmB}/20250131T230003Z.json`);
    await remote.delete(`xo-vm-backups/${vmB}/vdis/${JOB}/${diskB.vdiUuid}/20250131T230003Z.vhd`);
    // VM C: metadata from a future Cairn
    const vmC = randomUUID();
    await remote.writeFile(
      `xo-vm-backups/${vmC}/20250131T220003Z.json`,
      JSON.stringify({
        jobId: JOB,
        mode: "full",
        scheduleId: SCHEDULE,
        timestamp: T0,
        version: "2.0.0",
        vm: {},
        vmSnapshot: {},
        xva: "./20250131T220003Z.xva",
        cairn: { formatVersion: 99 },
      }),
    );

    const { backups, problems, issues } = await scanRepository(remote);
    expect(backups.map((b) => `${b.vmUuid} ${b.timestamp}`).sort()).toEqual([0, 1, 2].map((n) => `${vmA} ${T0 + n * HOUR}`).sort());
    const a2 = backups.find((b) => b.timestamp === T0 + 2 * HOUR);
    expect(a2).toMatchObject({
      vmName: "web-01",
      mode: "delta",
      jobId: JOB,
      scheduleId: SCHEDULE,
      quiesced: true,
      compression: "none",
      metadataPath: `xo-vm-backups/${vmA}/20250201T000003Z.json`,
    });
    expect(a2?.disks).toEqual([
      {
        vdiRef: "OpaqueRef:vdi-0",
        vdiUuid: diskA.vdiUuid,
        name: "disk 0",
        virtualSize: 8 * MiB,
        chain: ["20250131T220003Z", "20250131T230003Z", "20250201T000003Z"].map(
          (d) => `xo-vm-backups/${vmA}/vdis/${JOB}/${diskA.vdiUuid}/${d}.vhd`,
        ),
        checksums: ["20250131T220003Z", "20250131T230003Z", "20250201T000003Z"].map(
          (d) => `xo-vm-backups/${vmA}/vdis/${JOB}/${diskA.vdiUuid}/${d}.vhd.blocksums`,
        ),
      },
    ]);
    for (const backup of backups)
      expect((await readDisk(remote, backup.disks[0].chain)).equals(contents.get(backup.timestamp) as Buffer)).toBe(true);
    expect(problems).toHaveLength(3);
    expect(problems).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^xo-vm-backups/${vmB}/20250131T220003Z.json: incomplete backup, not listed: its file .*20250131T220003Z.xva is missing`,
        ),
      ),
    );
    expect(problems).toContainEqual(
      expect.stringMatching(
        /20250201T000003Z.json: incomplete backup, not listed: INCOMPLETE_BACKUP: broken chain: .*20250201T000003Z.vhd is a differencing VHD whose parent \(VHD uuid [0-9a-f-]+\) is not in its folder/,
      ),
    );
    expect(problems).toContainEqual(
      expect.stringMatching(
        /unreadable metadata \(UNSUPPORTED_FORMAT_VERSION: .* cairn.formatVersion 99.*\); nothing is deleted or merged in this VM's folder/,
      ),
    );
    // The same problems as data: what code decides on (the sentences above are for people and the API).
    expect(issues.map((issue) => issue.message)).toEqual(problems);
    expect(issues.map(({ kind, vmUuid, path }) => ({ kind, vmUuid, path }))).toEqual(
      expect.arrayContaining([
        { kind: "INCOMPLETE_BACKUP", vmUuid: vmB, path: `xo-vm-backups/${vmB}/20250131T220003Z.json` },
        { kind: "UNREADABLE_FILE", vmUuid: vmC, path: `xo-vm-backups/${vmC}/20250131T220003Z.json` },
      ]),
    );
    await dead.abort();
  });

  it("reads chains through openRandomAccess on a remote without local files, the same bytes as locally", async () => {
    const local = await tempRemote();
    const vmUuid = randomUUID();
    const disk = new SimulatedDisk(randomUUID(), 12 * MiB, 9);
    await writeDeltaBackup(local, { vmUuid, jobId: JOB, scheduleId: SCHEDULE, timestamp: T0, disks: [disk], kind: "full" });
    disk.scribble(8);
    const last = await writeDeltaBackup(local, {
      vmUuid,
      jobId: JOB,
      scheduleId: SCHEDULE,
      timestamp: T0 + HOUR,
      disks: [disk],
      kind: "delta",
    });
    const remote = withoutLocalFiles(local);
    const { backups } = await scanRepository(remote);
    const newest = backups.find((b) => b.timestamp === T0 + HOUR);
    expect(newest?.disks[0].chain).toHaveLength(2);
    expect((await readDisk(remote, newest?.disks[0].chain ?? [])).equals(last.get(disk.vdiUuid) as Buffer)).toBe(true);
  });
});
