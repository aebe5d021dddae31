import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import { VHD_BLOCK_SIZE, type VhdBlock, createVhdStream } from "../../../server/formats/vhd/index.js";
import { LocalRemote } from "../../../server/remotes/local-remote.js";
import type { Remote } from "../../../server/remotes/remote.js";
import { type CommitInput, beginBackup } from "../../../server/repository/backup-writer.js";
import { openBackupDisk } from "../../../server/repository/chain-source.js";
import type { VmLockOptions } from "../../../server/repository/lock.js";
import { SeededRandom } from "../../formats/support/seeded-random.js";
import { tempFolder } from "../../support/temp-folder.js";

export const MiB = 1024 * 1024;
const SECTOR = 512;

/** A LOCAL remote in a fresh temporary folder, removed after the test that made it (or the file's tests: tempFolder). */
export async function tempRemote(): Promise<LocalRemote> {
  return new LocalRemote(await tempFolder("cairn-repository-"));
}

/**
 * A virtual disk in memory that changes between backups and exports itself as XAPI would: a full dynamic VHD of its
 * non-zero blocks, or a differencing VHD of the sectors written since the last export (bitmap bits for exactly those,
 * garbage in the other sectors of each block, so a reader ignoring bitmaps reads wrong).
 */
export class SimulatedDisk {
  readonly bytes: Buffer;
  readonly random: SeededRandom;
  private touched = new Set<number>();
  /** The footer uuid of the last export (the parent of the next delta). */
  lastUuid: string | undefined;

  constructor(
    readonly vdiUuid: string,
    size: number,
    seed: number,
  ) {
    this.bytes = Buffer.alloc(size);
    this.random = new SeededRandom(seed);
    this.scribble(12);
  }

  /** Random writes (1 to 80 sectors each) anywhere on the disk. */
  scribble(count: number): void {
    const sectors = this.bytes.length / SECTOR;
    for (let i = 0; i < count; i++) {
      const first = this.random.int(sectors);
      const length = Math.min(sectors - first, 1 + this.random.int(80));
      this.random.fill(this.bytes.subarray(first * SECTOR, (first + length) * SECTOR));
      for (let s = first; s < first + length; s++) this.touched.add(s);
    }
  }

  /** A VHD stream of the disk now: full, or differencing on the last export. Returns the content it represents. */
  export(kind: "full" | "delta"): { stream: Readable; uuid: string; expected: Buffer; differencing: boolean } {
    const uuid = randomUUID();
    const expected = Buffer.from(this.bytes);
    const blockCount = Math.ceil(this.bytes.length / VHD_BLOCK_SIZE);
    const differencing = kind === "delta" && this.lastUuid !== undefined;
    const perBlock = new Map<number, number[]>();
    if (differencing) {
      for (const sector of this.touched) {
        const block = Math.floor((sector * SECTOR) / VHD_BLOCK_SIZE);
        perBlock.set(block, [...(perBlock.get(block) ?? []), sector]);
      }
    } else {
      for (let block = 0; block < blockCount; block++) {
        if (expected.subarray(block * VHD_BLOCK_SIZE, (block + 1) * VHD_BLOCK_SIZE).some((b) => b !== 0)) perBlock.set(block, []);
      }
    }
    const blockIndexes = [...perBlock.keys()].sort((a, b) => a - b);
    const random = this.random;
    function* blocks(): Generator<VhdBlock> {
      for (const index of blockIndexes) {
        const start = index * VHD_BLOCK_SIZE;
        if (!differencing) {
          const data = Buffer.alloc(VHD_BLOCK_SIZE);
          expected.copy(data, 0, start, Math.min(start + VHD_BLOCK_SIZE, expected.length));
          yield { index, data };
          continue;
        }
        const data = random.fill(Buffer.alloc(VHD_BLOCK_SIZE));
        const bitmap = Buffer.alloc(512);
        for (const sector of perBlock.get(index) ?? []) {
          const inBlock = sector - start / SECTOR;
          bitmap[inBlock >> 3] |= 0x80 >> (inBlock & 7);
          expected.copy(data, inBlock * SECTOR, sector * SECTOR, (sector + 1) * SECTOR);
        }
        yield { index, data, bitmap };
      }
    }
    const stream = createVhdStream({
      virtualSize: this.bytes.length,
      uuid,
      parent: differencing ? { uuid: this.lastUuid as string } : undefined,
      blockIndexes,
      blocks: blocks(),
    });
    this.lastUuid = uuid;
    this.touched = new Set();
    return { stream, uuid, expected, differencing };
  }
}

/** A small VM record, as XAPI would give it. */
export function vmRecord(vmUuid: string, name = "web-01"): Record<string, unknown> {
  return { uuid: vmUuid, name_label: name, power_state: "Running", is_a_snapshot: false, tags: [] };
}

export interface DeltaBackupPlan {
  vmUuid: string;
  jobId: string;
  scheduleId: string;
  timestamp: number;
  disks: SimulatedDisk[];
  kind: "full" | "delta";
  lock?: VmLockOptions;
}

/** Writes and commits one delta-mode backup of every disk; returns the content each disk had (by VDI uuid). */
export async function writeDeltaBackup(remote: Remote, plan: DeltaBackupPlan): Promise<Map<string, Buffer>> {
  const writer = await beginBackup(remote, {
    vmUuid: plan.vmUuid,
    timestamp: plan.timestamp,
    mode: "delta",
    jobId: plan.jobId,
    lock: plan.lock,
  });
  const expected = new Map<string, Buffer>();
  const vhds: Record<string, string> = {};
  const vdis: NonNullable<CommitInput["vdis"]> = {};
  const isVhdDifferencing: Record<string, boolean> = {};
  const disks: NonNullable<CommitInput["cairn"]["disks"]> = {};
  for (const [i, disk] of plan.disks.entries()) {
    const ref = `OpaqueRef:vdi-${i}`;
    const exported = disk.export(plan.kind);
    const written = await writer.writeDisk(disk.vdiUuid, exported.stream);
    vhds[ref] = written.path;
    vdis[ref] = { uuid: randomUUID(), name_label: `disk ${i}`, virtual_size: disk.bytes.length, $snapshot_of$uuid: disk.vdiUuid };
    isVhdDifferencing[ref] = exported.differencing;
    disks[ref] = { vdiUuid: disk.vdiUuid, name: `disk ${i}`, virtualSize: disk.bytes.length, differencing: exported.differencing };
    expected.set(disk.vdiUuid, exported.expected);
  }
  await writer.commit({
    scheduleId: plan.scheduleId,
    vm: vmRecord(plan.vmUuid),
    vmSnapshot: { ...vmRecord(randomUUID()), is_a_snapshot: true },
    vdis,
    vhds,
    isVhdDifferencing,
    cairn: { quiesced: true, compression: "none", disks },
  });
  return expected;
}

/** The whole virtual disk read through the chain view. */
export async function readDisk(remote: Remote, chain: string[]): Promise<Buffer> {
  const view = await openBackupDisk(remote, chain);
  try {
    return await view.read(0, view.virtualSize);
  } finally {
    await view.close();
  }
}

/** Every file under `dir`, relative, sorted. */
export async function filesUnder(remote: Remote, dir = ""): Promise<string[]> {
  return remote.list(dir, { recursive: true });
}

/** Hides a remote's local folder, so the repository must treat it as SMB (chain reads and merges through the remote). */
export function withoutLocalFiles(remote: Remote): Remote {
  return new Proxy(remote, {
    get(target, key) {
      if (key === "kind") return "SMB";
      if (key === "root" || key === "localPath") return undefined;
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** Hides the local folder and in-place updates too, so the repository must treat the remote as S3 (no merge in place). */
export function withoutUpdatesInPlace(remote: Remote): Remote {
  return new Proxy(remote, {
    get(target, key) {
      if (key === "kind") return "S3";
      if (key === "root" || key === "localPath" || key === "openForUpdate") return undefined;
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

export const HOUR = 3600 * 1000;
export const T0 = Date.UTC(2025, 0, 31, 22, 0, 3);
