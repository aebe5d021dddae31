/**
 * Reads a disk's partition table: MBR (primary partitions, and logical ones through the extended partition's EBR chain)
 * and GPT (the primary header at LBA 1 and its entry array). Partition numbers are the ones Linux gives (/dev/xvda1...):
 * MBR primaries 1-4, logicals from 5; GPT entries by their index + 1. Nothing is written; a damaged table is an error
 * naming what is wrong, never a crash.
 */
import type { DiskReader } from "./virtual-disk.js";

export const SECTOR = 512;

export type TableKind = "MBR" | "GPT" | "NONE";

export interface Partition {
  number: number;
  /** Bytes from the start of the disk. */
  offset: number;
  size: number;
  /** MBR type byte as hex ("83", "0c"...) or the GPT type GUID. */
  type: string;
  /** GPT partition name (empty for MBR). */
  name: string;
}

export interface PartitionTable {
  kind: TableKind;
  partitions: Partition[];
}

const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
const GPT_PROTECTIVE = 0xee;

export async function readPartitionTable(disk: DiskReader): Promise<PartitionTable> {
  if (disk.size < SECTOR) return { kind: "NONE", partitions: [] };
  const mbr = await disk.read(0, SECTOR);
  if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) return { kind: "NONE", partitions: [] };
  const entries = [0, 1, 2, 3].map((i) => mbrEntry(mbr, i));
  if (entries.some((entry) => entry.type === GPT_PROTECTIVE)) return { kind: "GPT", partitions: await readGpt(disk) };
  // A boot sector of a file system (FAT, NTFS) also ends in 55 AA: entries that do not fit the disk mean "no table".
  const used = entries.filter((entry) => entry.type !== 0 && entry.sectors > 0);
  if (
    used.length === 0 ||
    used.some((entry) => (entry.start + entry.sectors) * SECTOR > disk.size || (entry.status !== 0 && entry.status !== 0x80))
  ) {
    return { kind: "NONE", partitions: [] };
  }
  const partitions: Partition[] = [];
  for (const [i, entry] of entries.entries()) {
    if (entry.type === 0 || entry.sectors === 0) continue;
    partitions.push({ number: i + 1, offset: entry.start * SECTOR, size: entry.sectors * SECTOR, type: hex(entry.type), name: "" });
    if (EXTENDED_TYPES.has(entry.type)) partitions.push(...(await readLogicals(disk, entry.start)));
  }
  return { kind: "MBR", partitions };
}

function mbrEntry(sector: Buffer, index: number) {
  const at = 446 + index * 16;
  return { status: sector[at], type: sector[at + 4], start: sector.readUInt32LE(at + 8), sectors: sector.readUInt32LE(at + 12) };
}

/** Logical partitions: each EBR holds one partition (relative to the EBR) and a link to the next EBR (relative to the extended). */
async function readLogicals(disk: DiskReader, extendedStart: number): Promise<Partition[]> {
  const logicals: Partition[] = [];
  let ebr = extendedStart;
  for (let number = 5; number < 5 + 128; number++) {
    if ((ebr + 1) * SECTOR > disk.size) break;
    const sector = await disk.read(ebr * SECTOR, SECTOR);
    if (sector[510] !== 0x55 || sector[511] !== 0xaa) break;
    const own = mbrEntry(sector, 0);
    const next = mbrEntry(sector, 1);
    if (own.type !== 0 && own.sectors > 0) {
      logicals.push({ number, offset: (ebr + own.start) * SECTOR, size: own.sectors * SECTOR, type: hex(own.type), name: "" });
    }
    if (next.type === 0 || next.start === 0) break;
    ebr = extendedStart + next.start;
  }
  return logicals;
}

async function readGpt(disk: DiskReader): Promise<Partition[]> {
  const header = await disk.read(SECTOR, SECTOR);
  if (header.toString("latin1", 0, 8) !== "EFI PART") throw new Error('the MBR announces a GPT but LBA 1 holds no GPT header ("EFI PART")');
  const entriesLba = Number(header.readBigUInt64LE(72));
  const count = header.readUInt32LE(80);
  const entrySize = header.readUInt32LE(84);
  if (entrySize < 128 || count > 1024 || (entriesLba + 1) * SECTOR > disk.size)
    throw new Error(`the GPT header is damaged (entries at LBA ${entriesLba}, ${count} of ${entrySize} bytes)`);
  const table = await disk.read(entriesLba * SECTOR, Math.min(count * entrySize, disk.size - entriesLba * SECTOR));
  const partitions: Partition[] = [];
  for (let i = 0; i < count && (i + 1) * entrySize <= table.length; i++) {
    const entry = table.subarray(i * entrySize, (i + 1) * entrySize);
    if (entry.subarray(0, 16).every((b) => b === 0)) continue;
    const first = Number(entry.readBigUInt64LE(32));
    const last = Number(entry.readBigUInt64LE(40));
    if (last < first) continue;
    const name = entry.toString("utf16le", 56, 128).replace(/\u0000.*$/s, "");
    partitions.push({ number: i + 1, offset: first * SECTOR, size: (last - first + 1) * SECTOR, type: guid(entry.subarray(0, 16)), name });
  }
  return partitions;
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

/** A GPT GUID in its usual text form (the first three fields are little-endian). */
function guid(bytes: Buffer): string {
  const h = (b: Buffer) => b.toString("hex");
  const le = (b: Buffer) => h(Buffer.from(b).reverse());
  return `${le(bytes.subarray(0, 4))}-${le(bytes.subarray(4, 6))}-${le(bytes.subarray(6, 8))}-${h(bytes.subarray(8, 10))}-${h(bytes.subarray(10, 16))}`.toUpperCase();
}
