import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { VhdFile } from "../../server/formats/vhd/index.js";
import { createXvaStream } from "../../server/formats/xva/index.js";
import type { LocalRemote } from "../../server/remotes/local-remote.js";
import type { Remote } from "../../server/remotes/remote.js";
import { beginBackup } from "../../server/repository/backup-writer.js";
import { openBackupDisk } from "../../server/repository/chain-source.js";
import { acquireVmLease } from "../../server/repository/lock.js";
import { applyRetention } from "../../server/repository/retention.js";
import { type ScannedBackup, scanRepository } from "../../server/repository/scanner.js";
import { verifyBackup } from "../../server/repository/verify.js";
import { xvaReadStream } from "../../server/repository/xva-source.js";
import { flipByte as flipLocalByte } from "../support/flip-byte.js";
import { bufferDisk, collect, sampleOva } from "../formats/support/xva-helpers.js";
import { HOUR, MiB, SimulatedDisk, T0, tempRemote, vmRecord, withoutLocalFiles, writeDeltaBackup } from "./support/fixtures.js";

/**
 * End-to-end checksums: whatever byte of a kept backup rots (a VHD block's data or bitmap, a footer, the block checksums,
 * the metadata, the XVA), no read returns wrong bytes without an error naming the file, and a verify finds it.
 */

interface DeltaHistory {
  remote: LocalRemote;
  vmUuid: string;
  jobId: string;
  scheduleId: string;
  contents: Map<number, Map<string, Buffer>>;
}

async function deltaHistory(seed: number, count = 3): Promise<DeltaHistory> {
  const remote = await tempRemote();
  const history: DeltaHistory = { remote, vmUuid: randomUUID(), jobId: randomUUID(), scheduleId: randomUUID(), contents: new Map() };
  const disks = [new SimulatedDisk(randomUUID(), 8 * MiB, seed)];
  for (let n = 0; n < count; n++) {
    if (n > 0) disks[0].scribble(8);
    const timestamp = T0 + n * HOUR;
    history.contents.set(timestamp, await writeDeltaBackup(remote, { ...history, disks, timestamp, kind: n === 0 ? "full" : "delta" }));
  }
  return history;
}

async function backupsOf(remote: Remote, vmUuid: string): Promise<ScannedBackup[]> {
  return (await scanRepository(remote, { vmUuid })).backups;
}

async function readWhole(remote: Remote, backup: ScannedBackup): Promise<Buffer> {
  const chain = await openBackupDisk(remote, backup.disks[0]);
  try {
    return await chain.read(0, chain.virtualSize);
  } finally {
    await chain.close();
  }
}

/** Flips one byte of a file of a LOCAL remote in place. */
function flipByte(remote: LocalRemote, path: string, offset: number): Promise<void> {
  return flipLocalByte(join(remote.root, path), offset);
}

/** Where block `index`'s bitmap and data lie in a VHD of the remote. */
async function blockPlace(remote: LocalRemote, path: string): Promise<{ index: number; bitmapAt: number; dataAt: number; size: number }> {
  const file = await VhdFile.open(join(remote.root, path));
  try {
    for (let index = 0; index < file.blockCount; index++) {
      if (file.hasBlock(index))
        return { index, bitmapAt: file.blockOffset(index) as number, dataAt: file.dataOffset(index) as number, size: file.size };
    }
    throw new Error(`${path} has no block`);
  } finally {
    await file.close();
  }
}

describe("end-to-end checksums of delta backups", () => {
  for (const where of ["data", "bitmap"] as const) {
    it(`a flipped byte in a block's ${where} of a kept VHD fails every read of it with an integrity error naming file and block, and verify finds it`, async () => {
      const history = await deltaHistory(where === "data" ? 3 : 4);
      const [oldest, middle, newest] = await backupsOf(history.remote, history.vmUuid);
      const target = middle.disks[0].chain[1]; // the middle backup's own VHD: the newest backup reads through it too
      const place = await blockPlace(history.remote, target);
      await flipByte(history.remote, target, (where === "data" ? place.dataAt : place.bitmapAt) + 7);

      for (const backup of [middle, newest]) {
        await expect(readWhole(history.remote, backup)).rejects.toThrow(new RegExp(`VHD_CHECKSUM_MISMATCH.*block ${place.index}`));
        await expect(readWhole(withoutLocalFiles(history.remote), backup)).rejects.toThrow(/VHD_CHECKSUM_MISMATCH/);
        const verdict = await verifyBackup(history.remote, backup);
        expect(verdict.status).toBe("DAMAGED");
        expect(verdict.problems).toContainEqual(expect.objectContaining({ file: target, block: place.index }));
      }
      // the older backup does not go through the damaged file: it reads, and verifies, as written
      expect(
        (await readWhole(history.remote, oldest)).equals(history.contents.get(oldest.timestamp)?.values().next().value as Buffer),
      ).toBe(true);
      expect((await verifyBackup(history.remote, oldest)).status).toBe("OK");
    });
  }

  it("a damaged trailing footer still reads (from its copy); verify reports it, repairs it on request, and then finds nothing", async () => {
    const history = await deltaHistory(5, 2);
    const [, newest] = await backupsOf(history.remote, history.vmUuid);
    const target = newest.disks[0].chain[1];
    const { size } = await history.remote.stat(target);
    await flipByte(history.remote, target, size - 512 + 70);
    const [, listed] = await backupsOf(history.remote, history.vmUuid);
    expect(listed, "still listed: its footer copy at offset 0 is intact").toBeDefined();
    expect((await readWhole(history.remote, listed)).equals(history.contents.get(listed.timestamp)?.values().next().value as Buffer)).toBe(
      true,
    );
    const before = await verifyBackup(history.remote, listed);
    expect(before.status).toBe("DAMAGED");
    expect(before.problems).toEqual([
      expect.objectContaining({ file: target, repairable: true, detail: expect.stringMatching(/trailing footer is damaged/) }),
    ]);
    expect((await verifyBackup(history.remote, listed, { repair: true })).status).toBe("REPAIRED");
    expect((await verifyBackup(history.remote, listed)).status).toBe("OK");
  });

  it("a damaged block checksum file fails the read naming it, never reading unchecked", async () => {
    const history = await deltaHistory(6, 2);
    const [, newest] = await backupsOf(history.remote, history.vmUuid);
    const sums = newest.disks[0].checksums[1] as string;
    await flipByte(history.remote, sums, 60);
    await expect(readWhole(history.remote, newest)).rejects.toThrow(/VHD_CHECKSUM_FILE/);
    const verdict = await verifyBackup(history.remote, newest);
    expect(verdict.status).toBe("DAMAGED");
    expect(verdict.problems).toContainEqual(expect.objectContaining({ file: sums }));
  });

  it("a flipped byte in a metadata file: the backup is no longer listed or trusted, retention touches nothing, verify names the file", async () => {
    const history = await deltaHistory(7, 3);
    const [, middle] = await backupsOf(history.remote, history.vmUuid);
    const text = (await history.remote.readFile(middle.metadataPath)).toString("utf8");
    await flipByte(history.remote, middle.metadataPath, text.indexOf('"name_label"') + 15);
    const scan = await scanRepository(history.remote, { vmUuid: history.vmUuid });
    expect(scan.backups.map((b) => b.metadataPath)).not.toContain(middle.metadataPath);
    expect(scan.problems.join("\n")).toMatch(/INTEGRITY_ERROR: .* does not match its own checksum/);
    const retention = await applyRetention(history.remote, { ...history, keep: 1, minAgeMs: 0 });
    expect(retention.deleted).toEqual([]);
    expect(retention.problems.join("\n")).toContain(middle.metadataPath);
    const verdict = await verifyBackup(history.remote, middle);
    expect(verdict).toMatchObject({ status: "DAMAGED", problems: [expect.objectContaining({ file: middle.metadataPath })] });
  });

  it("a merge checks the blocks it reads: a damaged block stops the merge before it writes, and the kept backups still read right", async () => {
    const history = await deltaHistory(8, 3);
    const [oldest] = await backupsOf(history.remote, history.vmUuid);
    const middleVhd = (await backupsOf(history.remote, history.vmUuid))[1].disks[0].chain[1];
    const place = await blockPlace(history.remote, middleVhd);
    await flipByte(history.remote, middleVhd, place.dataAt + 3);
    const result = await applyRetention(history.remote, { ...history, keep: 2, minAgeMs: 0 });
    expect(result.deleted).toEqual([oldest.metadataPath]);
    expect(result.merged).toEqual([]);
    expect(result.problems.join("\n")).toMatch(/VHD_CHECKSUM_MISMATCH/);
    const [kept] = await backupsOf(history.remote, history.vmUuid);
    await expect(readWhole(history.remote, kept)).rejects.toThrow(/VHD_CHECKSUM_MISMATCH/); // still damaged, never "fixed" silently
  });
});

describe("end-to-end checksums of full backups", () => {
  it("a flipped byte in an XVA fails its read before the stream ends, naming the file; verify finds it", async () => {
    const remote = await tempRemote();
    const vmUuid = randomUUID();
    const disk = Buffer.alloc(3 * MiB, 0x42);
    const xva = await collect(
      createXvaStream({ ova: sampleOva([{ ref: "Ref:1", size: disk.length }]), disks: [bufferDisk("Ref:1", disk)] }),
    );
    const writer = await beginBackup(remote, { vmUuid, timestamp: T0, mode: "full", jobId: randomUUID() });
    await writer.writeXva(Readable.from([xva]));
    await writer.commit({
      scheduleId: randomUUID(),
      vm: vmRecord(vmUuid),
      vmSnapshot: vmRecord(randomUUID()),
      cairn: { quiesced: false, compression: "none" },
    });
    const [backup] = await backupsOf(remote, vmUuid);
    expect((await collect(await xvaReadStream(remote, backup))).equals(xva)).toBe(true);
    expect((await verifyBackup(remote, backup)).status).toBe("OK");

    await flipByte(remote, backup.xvaPath as string, Math.floor(xva.length / 2));
    const received: Buffer[] = [];
    const stream = await xvaReadStream(remote, backup);
    const failure = await new Promise<Error | undefined>((resolve) => {
      stream.on("data", (chunk: Buffer) => received.push(chunk));
      stream.once("error", resolve);
      stream.once("end", () => resolve(undefined));
    });
    expect(failure?.message).toMatch(new RegExp(`INTEGRITY_ERROR: ${backup.xvaPath} is damaged: its SHA-256 is`));
    expect(Buffer.concat(received).length).toBeLessThan(xva.length); // the consumer never got a complete file
    const verdict = await verifyBackup(remote, backup);
    expect(verdict.status).toBe("DAMAGED");
    expect(verdict.problems[0].file).toBe(backup.xvaPath);
  });
});

describe("restore leases", () => {
  it("a restore reading a chain keeps retention out (no merge rewrites what it reads); once it is done retention merges and every kept backup reads the same", async () => {
    const history = await deltaHistory(9, 4);
    const backups = await backupsOf(history.remote, history.vmUuid);
    const reading = backups[1];
    const lease = await acquireVmLease(history.remote, history.vmUuid, `restore of ${reading.metadataPath}`);
    const chain = await openBackupDisk(history.remote, reading.disks[0]);
    try {
      await expect(applyRetention(history.remote, { ...history, keep: 2, minAgeMs: 0 })).rejects.toThrow(
        /LOCKED: .*restore of .* holds the backups/,
      );
      expect(
        (await chain.read(0, chain.virtualSize)).equals(history.contents.get(reading.timestamp)?.values().next().value as Buffer),
      ).toBe(true);
    } finally {
      await chain.close();
      await lease.release();
    }
    const result = await applyRetention(history.remote, { ...history, keep: 2, minAgeMs: 0 });
    expect(result.merged.length).toBeGreaterThan(0);
    for (const kept of await backupsOf(history.remote, history.vmUuid)) {
      expect((await readWhole(history.remote, kept)).equals(history.contents.get(kept.timestamp)?.values().next().value as Buffer)).toBe(
        true,
      );
      expect((await verifyBackup(history.remote, kept)).status).toBe("OK");
    }
  });
});
