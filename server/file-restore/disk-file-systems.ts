/**
 * Opens the file system of one partition of one disk of a delta restore point, reading through the VHD chain in place
 * (openBackupDisk: no mount, no root, no temporary copy).
 *
 * Partitions are numbered as Linux numbers them (1-4 primary, 5+ logical, GPT entries by index + 1). `partition`:
 * - a number: that partition;
 * - 0: the whole disk as one file system (a disk with no partition table);
 * - null: the whole disk when it has no partition table, else the first partition holding a file system Cairn reads;
 *   when none does, the error lists each partition with the reason.
 *
 * listDiskPartitions says the same up front, for people choosing: every partition (or the whole disk) with its size, what
 * it holds, and why it cannot be browsed when it cannot.
 */
import { CairnError, ErrorCode, InputError, messageOf } from "../errors.js";
import type { VhdChain } from "../formats/vhd/index.js";
import { openBackupDisk } from "../repository/chain-source.js";
import type { ScannedBackup } from "../repository/scanner.js";
import type { Remote } from "../remotes/remote.js";
import { openExtFileSystem } from "./ext-file-system.js";
import { openFatFileSystem } from "./fat-file-system.js";
import type { ReadOnlyFileSystem } from "./file-system.js";
import { probeFileSystem, type ProbeResult } from "./file-system-probe.js";
import { readPartitionTable, type Partition } from "./partition-table.js";
import { windowOf, type DiskReader } from "./virtual-disk.js";

export interface OpenedFileSystem {
  fs: ReadOnlyFileSystem;
  /** The partition opened (0: the whole disk). */
  partition: number;
  close(): Promise<void>;
}

/** A partition as listDiskPartitions describes it; number 0 is the whole disk (a disk with no partition table). */
export interface DiskPartitionInfo {
  number: number;
  name: string;
  offset: number;
  size: number;
  /** MBR type byte as hex or GPT type GUID; empty for the whole disk. */
  type: string;
  fileSystem: string | null;
  /** Whether a null `partition` opens this one (the one browsed when nobody chooses). */
  automatic: boolean;
  /** Why it cannot be browsed; null when it can. */
  reason: string | null;
}

/**
 * Every partition of a disk (MBR primaries and logicals, GPT entries), in table order, or the whole disk alone when it has
 * no partition table; each probed for its file system.
 */
export async function listDiskPartitions(remote: Remote, backup: ScannedBackup, diskIndex: number): Promise<DiskPartitionInfo[]> {
  const chain = await openBackupDisk(remote, diskOf(backup, diskIndex));
  try {
    const reader: DiskReader = { size: chain.virtualSize, read: (offset, length) => chain.read(offset, length) };
    const table = await readTable(reader, diskIndex);
    if (table.kind === "NONE") {
      const probe = await probeFileSystem(reader);
      const readable = probe.kind !== "unsupported";
      return [
        {
          number: 0,
          name: "",
          offset: 0,
          size: reader.size,
          type: "",
          fileSystem: probe.fileSystem,
          automatic: readable,
          reason: readable ? null : probe.reason,
        },
      ];
    }
    const listed: DiskPartitionInfo[] = [];
    for (const part of table.partitions) {
      const info = { number: part.number, name: part.name, offset: part.offset, size: part.size, type: part.type };
      if (table.kind === "MBR" && EXTENDED_TYPES.has(part.type)) {
        listed.push({
          ...info,
          fileSystem: null,
          automatic: false,
          reason: "an extended partition: it holds the logical partitions (5 and up)",
        });
        continue;
      }
      if (part.offset + part.size > reader.size) {
        listed.push({ ...info, fileSystem: null, automatic: false, reason: "it ends past the end of the disk" });
        continue;
      }
      const probe = await probeFileSystem(windowOf(reader, part.offset, part.size));
      const readable = probe.kind !== "unsupported";
      listed.push({
        ...info,
        fileSystem: probe.fileSystem,
        automatic: readable && !listed.some((p) => p.automatic),
        reason: readable ? null : probe.reason,
      });
    }
    return listed;
  } finally {
    await chain.close();
  }
}

/** MBR types of an extended partition (the container of the logical ones), as partition-table.ts writes them. */
const EXTENDED_TYPES = new Set(["05", "0f", "85"]);

function diskOf(backup: ScannedBackup, diskIndex: number) {
  const disk = backup.disks[diskIndex];
  if (!disk)
    throw new InputError(
      "disk",
      `must be a disk index from 0 to ${backup.disks.length - 1} (this restore point has ${backup.disks.length} disk(s)); got ${diskIndex}`,
    );
  return disk;
}

async function readTable(disk: DiskReader, diskIndex: number) {
  try {
    return await readPartitionTable(disk);
  } catch (error) {
    throw new CairnError(ErrorCode.BadInput, `Disk ${diskIndex}: its partition table cannot be read (${messageOf(error)}).`, {
      field: "disk",
    });
  }
}

export async function openDiskFileSystem(
  remote: Remote,
  backup: ScannedBackup,
  diskIndex: number,
  partition: number | null,
): Promise<OpenedFileSystem> {
  const chain = await openBackupDisk(remote, diskOf(backup, diskIndex));
  try {
    const reader: DiskReader = { size: chain.virtualSize, read: (offset, length) => chain.read(offset, length) };
    const target = await choosePartition(reader, diskIndex, partition);
    const fs = target.probe.kind === "ext4" ? await openExtFileSystem(target.reader) : await openFatFileSystem(target.reader);
    return { fs, partition: target.number, close: () => closeBoth(fs, chain) };
  } catch (error) {
    // The open failed and that error is what the caller sees; a close that fails too only leaves handles to the GC.
    await chain.close().catch(() => undefined);
    throw error;
  }
}

async function closeBoth(fs: ReadOnlyFileSystem, chain: VhdChain): Promise<void> {
  try {
    await fs.close();
  } finally {
    await chain.close();
  }
}

interface Candidate {
  number: number;
  reader: DiskReader;
  probe: ProbeResult & { kind: "ext4" | "fat" };
}

async function choosePartition(disk: DiskReader, diskIndex: number, requested: number | null): Promise<Candidate> {
  const table = await readTable(disk, diskIndex);
  const whole = async (): Promise<Candidate> => {
    const probe = await probeFileSystem(disk);
    if (probe.kind === "unsupported")
      throw new CairnError(ErrorCode.BadInput, `Disk ${diskIndex} as a whole: ${probe.reason}.`, { field: "partition" });
    return { number: 0, reader: disk, probe };
  };
  if (requested === 0 || (requested === null && table.kind === "NONE")) return whole();
  const tryPartition = async (part: Partition): Promise<Candidate | string> => {
    if (part.offset + part.size > disk.size) return `partition ${part.number} ends past the end of the disk`;
    const reader = windowOf(disk, part.offset, part.size);
    const probe = await probeFileSystem(reader);
    return probe.kind === "unsupported"
      ? `partition ${part.number} (type ${part.type}): ${probe.reason}`
      : { number: part.number, reader, probe };
  };
  if (requested !== null) {
    const part = table.partitions.find((p) => p.number === requested);
    if (!part) {
      const numbers = table.partitions.map((p) => p.number);
      throw new InputError(
        "partition",
        `disk ${diskIndex} (${table.kind} table) has ${numbers.length ? `partitions ${numbers.join(", ")}` : "no partition"}; got ${requested} (0 means the whole disk)`,
      );
    }
    const result = await tryPartition(part);
    if (typeof result === "string") throw new CairnError(ErrorCode.BadInput, `Disk ${diskIndex}, ${result}.`, { field: "partition" });
    return result;
  }
  const reasons: string[] = [];
  for (const part of table.partitions) {
    const result = await tryPartition(part);
    if (typeof result !== "string") return result;
    reasons.push(result);
  }
  throw new CairnError(
    ErrorCode.BadInput,
    `Disk ${diskIndex} (${table.kind} table) has no partition Cairn can browse: ${reasons.join("; ") || "the table is empty"}.`,
    { field: "partition" },
  );
}
