import { createHash } from "node:crypto";
import { randomUUID } from "node:crypto";
import { utimes } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { liveClaims } from "../../server/repository/lock.js";
import { describe, expect, it } from "vitest";
import { createXvaStream } from "../../server/formats/xva/index.js";
import { beginBackup } from "../../server/repository/backup-writer.js";
import { parseBackupMetadata } from "../../server/repository/metadata.js";
import { bufferDisk, collect, sampleOva } from "../formats/support/xva-helpers.js";
import { HOUR, MiB, SimulatedDisk, T0, filesUnder, readDisk, tempRemote, vmRecord } from "./support/fixtures.js";
import { scanRepository } from "../../server/repository/scanner.js";

const JOB = "0f0e2c57-8f6a-4a43-a5a7-2f8d3b1c9e01";
const SCHEDULE = "7c1d8e02-3b8b-4e0f-9f57-52e1a6d7c4aa";

/** A real VHD export that breaks off after `afterBytes`, as when the host goes away mid-export. */
function failingSource(afterBytes: number): Readable {
  const exported = new SimulatedDisk(randomUUID(), 8 * MiB, 77).export("full").stream;
  let sent = 0;
  return new Readable({
    async read() {
      if (sent >= afterBytes) {
        exported.destroy();
        this.destroy(new Error("the host went away mid-export"));
        return;
      }
      const chunk =
        (exported.read() as Buffer | null) ??
        (await new Promise<Buffer | null>((resolve) => exported.once("readable", () => resolve(exported.read() as Buffer | null))));
      if (chunk === null) return void this.push(null);
      sent += chunk.length;
      this.push(chunk);
    },
  });
}

describe("backup writer", async () => {
  const remote = await tempRemote();

  it("writes a full backup as <date>.xva then <date>.json, in XO's layout and fields, the XVA byte for byte", async () => {
    const vmUuid = randomUUID();
    const ova = sampleOva([{ ref: "Ref:10", size: 3 * MiB }]);
    const disk = Buffer.alloc(3 * MiB, 5);
    const xva = await collect(createXvaStream({ ova, disks: [bufferDisk("Ref:10", disk)] }));
    const writer = await beginBackup(remote, { vmUuid, timestamp: T0, mode: "full", jobId: JOB });
    const written = await writer.writeXva(Readable.from([xva]));
    expect(written).toMatchObject({
      path: "./20250131T220003Z.xva",
      remotePath: `xo-vm-backups/${vmUuid}/20250131T220003Z.xva`,
      bytes: xva.length,
    });
    expect(await filesUnder(remote, `xo-vm-backups/${vmUuid}`)).toEqual(["20250131T220003Z.xva"]);
    const metadata = await writer.commit({
      scheduleId: SCHEDULE,
      vm: vmRecord(vmUuid),
      vmSnapshot: vmRecord(randomUUID()),
      cairn: { quiesced: false, compression: "none" },
    });
    expect(await filesUnder(remote, `xo-vm-backups/${vmUuid}`)).toEqual(["20250131T220003Z.json", "20250131T220003Z.xva"]);
    const stored = parseBackupMetadata(await remote.readFile(`xo-vm-backups/${vmUuid}/20250131T220003Z.json`), "x");
    expect(stored).toEqual(metadata);
    expect(stored).toMatchObject({
      version: "2.0.0",
      mode: "full",
      jobId: JOB,
      scheduleId: SCHEDULE,
      timestamp: T0,
      xva: "./20250131T220003Z.xva",
      size: xva.length,
      cairn: {
        formatVersion: 2,
        quiesced: false,
        integrity: {
          algorithm: "sha256",
          files: { "./20250131T220003Z.xva": { sha256: createHash("sha256").update(xva).digest("hex"), size: xva.length } },
        },
      },
    });
    expect((await remote.readFile(written.remotePath)).equals(xva)).toBe(true);
    expect(await liveClaims(remote, vmUuid)).toEqual([]); // released
  });

  it("writes each disk of a delta backup to vdis/<job>/<vdi>/<date>.vhd and names them in vhds", async () => {
    const vmUuid = randomUUID();
    const disk = new SimulatedDisk(randomUUID(), 8 * MiB, 3);
    const writer = await beginBackup(remote, { vmUuid, timestamp: T0, mode: "delta", jobId: JOB });
    const exported = disk.export("full");
    const written = await writer.writeDisk(disk.vdiUuid, exported.stream);
    expect(written.path).toBe(`vdis/${JOB}/${disk.vdiUuid}/20250131T220003Z.vhd`);
    const metadata = await writer.commit({
      scheduleId: SCHEDULE,
      vm: vmRecord(vmUuid),
      vmSnapshot: vmRecord(randomUUID()),
      vhds: { "OpaqueRef:a": written.path },
      cairn: { quiesced: true, compression: "none" },
    });
    expect(metadata).toMatchObject({ mode: "delta", vhds: { "OpaqueRef:a": written.path }, size: written.bytes });
    expect((await readDisk(remote, [written.remotePath])).equals(exported.expected)).toBe(true);
  });

  it("abort removes every file it wrote and writes no metadata", async () => {
    const vmUuid = randomUUID();
    const disks = [new SimulatedDisk(randomUUID(), 8 * MiB, 4), new SimulatedDisk(randomUUID(), 8 * MiB, 5)];
    const writer = await beginBackup(remote, { vmUuid, timestamp: T0, mode: "delta", jobId: JOB });
    for (const disk of disks) await writer.writeDisk(disk.vdiUuid, disk.export("full").stream);
    expect((await filesUnder(remote, `xo-vm-backups/${vmUuid}`)).length).toBe(4); // 2 VHDs and their block checksums
    await writer.abort();
    expect(await filesUnder(remote, `xo-vm-backups/${vmUuid}`)).toEqual([]);
    expect(await liveClaims(remote, vmUuid)).toEqual([]);
  });

  it("a disk whose source fails mid-stream leaves no file (not even a temporary one) and no metadata, and commit is refused", async () => {
    const vmUuid = randomUUID();
    const good = new SimulatedDisk(randomUUID(), 8 * MiB, 6);
    const writer = await beginBackup(remote, { vmUuid, timestamp: T0, mode: "delta", jobId: JOB });
    const first = await writer.writeDisk(good.vdiUuid, good.export("full").stream);
    await expect(writer.writeDisk(randomUUID(), failingSource(3 * MiB))).rejects.toThrow("the host went away mid-export");
    await expect(
      writer.commit({
        scheduleId: SCHEDULE,
        vm: {},
        vmSnapshot: {},
        vhds: { a: first.path },
        cairn: { quiesced: true, compression: "none" },
      }),
    ).rejects.toThrow(/WRITER_STATE: .*a data write failed/);
    await writer.abort();
    expect(await filesUnder(remote, `xo-vm-backups/${vmUuid}`)).toEqual([]);
    expect((await scanRepository(remote, { vmUuid })).backups).toEqual([]);
  });

  it("an abort signal stops a write and leaves nothing", async () => {
    const vmUuid = randomUUID();
    const writer = await beginBackup(remote, { vmUuid, timestamp: T0, mode: "full", jobId: JOB });
    const controller = new AbortController();
    const endless = new Readable({
      read() {
        this.push(Buffer.alloc(64 * 1024));
      },
    });
    const pending = writer.writeXva(endless, { signal: controller.signal });
    setImmediate(() => controller.abort());
    await expect(pending).rejects.toThrow();
    await writer.abort();
    expect(await filesUnder(remote, `xo-vm-backups/${vmUuid}`)).toEqual([]);
  });

  it("commit refuses vhds that leave out a written disk or name one it did not write", async () => {
    const vmUuid = randomUUID();
    const disk = new SimulatedDisk(randomUUID(), 8 * MiB, 7);
    const writer = await beginBackup(remote, { vmUuid, timestamp: T0, mode: "delta", jobId: JOB });
    const written = await writer.writeDisk(disk.vdiUuid, disk.export("full").stream);
    const base = { scheduleId: SCHEDULE, vm: {}, vmSnapshot: {}, cairn: { quiesced: true, compression: "none" as const } };
    await expect(writer.commit({ ...base, vhds: { a: "vdis/x/y/20250131T220003Z.vhd" } })).rejects.toThrow(
      /unknown: vdis\/x\/y.*left out: vdis\//,
    );
    await expect(writer.commit({ ...base, vhds: {} })).rejects.toThrow(/WRITER_STATE/);
    await writer.commit({ ...base, vhds: { a: written.path } });
  });

  it("one writer per VM at a time: a second is refused naming the holder; a lock not renewed past its expiry (by the remote's clock) is taken over, and the first writer cannot commit", async () => {
    const vmUuid = randomUUID();
    const first = await beginBackup(remote, {
      vmUuid,
      timestamp: T0,
      mode: "full",
      jobId: JOB,
      lock: { holder: "worker-a", autoRenew: false },
    });
    await expect(beginBackup(remote, { vmUuid, timestamp: T0 + HOUR, mode: "full", jobId: JOB })).rejects.toThrow(
      /LOCKED: cannot lock the backups of VM .*: backup 20250131T220003Z of job .* holds the backups of VM .* \(an exclusive lock of worker-a/,
    );
    // The first writer's claim, as a process that stopped renewing it 11 minutes ago would leave it.
    const [claim] = await liveClaims(remote, vmUuid);
    const past = new Date(Date.now() - 11 * 60 * 1000);
    await utimes(join(remote.root, claim.path), past, past);
    const second = await beginBackup(remote, { vmUuid, timestamp: T0 + HOUR, mode: "full", jobId: JOB, lock: { holder: "worker-b" } });
    await first.writeXva(Readable.from([Buffer.alloc(1024)]));
    await expect(
      first.commit({ scheduleId: SCHEDULE, vm: {}, vmSnapshot: {}, cairn: { quiesced: true, compression: "none" } }),
    ).rejects.toThrow(/LOCKED: .*claim file is gone/);
    await first.abort();
    await second.abort();
    expect(await filesUnder(remote, `xo-vm-backups/${vmUuid}`)).toEqual([]);
  });

  it("refuses a second backup of the same VM in the same second", async () => {
    const vmUuid = randomUUID();
    const writer = await beginBackup(remote, { vmUuid, timestamp: T0, mode: "full", jobId: JOB });
    await writer.writeXva(Readable.from([Buffer.alloc(512)]));
    await writer.commit({ scheduleId: SCHEDULE, vm: {}, vmSnapshot: {}, cairn: { quiesced: true, compression: "gzip" } });
    await expect(beginBackup(remote, { vmUuid, timestamp: T0 + 400, mode: "full", jobId: JOB })).rejects.toThrow(
      /ALREADY_EXISTS: a backup of VM .* already exists at 20250131T220003Z/,
    );
    expect(await liveClaims(remote, vmUuid)).toEqual([]);
  });
});
