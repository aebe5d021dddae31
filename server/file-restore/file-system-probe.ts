/**
 * What a partition (or a whole disk) holds, from its first bytes: ext2/3/4 and FAT are readable; LVM, LUKS, NTFS, exFAT,
 * swap, an empty area or anything else gets one sentence saying why it cannot be browsed. `fileSystem` names what was
 * recognised, for people choosing a partition ("ext4", "FAT32", "NTFS"...); null when nothing was.
 */
import type { DiskReader } from "./virtual-disk.js";

export type ProbeResult = { kind: "ext4" | "fat"; fileSystem: string } | { kind: "unsupported"; reason: string; fileSystem: string | null };

const PROBE_BYTES = 8192;

export async function probeFileSystem(reader: DiskReader): Promise<ProbeResult> {
  if (reader.size < 2048)
    return { kind: "unsupported", reason: `too small to hold a file system (${reader.size} bytes)`, fileSystem: null };
  const head = await reader.read(0, Math.min(PROBE_BYTES, reader.size));
  const text = (start: number, length: number) => head.toString("latin1", start, start + length);
  if (head.length >= 1024 + 100 && head.readUInt16LE(1024 + 56) === 0xef53) return { kind: "ext4", fileSystem: extVersion(head) };
  if (text(0, 6) === "LUKS\xba\xbe")
    return { kind: "unsupported", reason: "an encrypted volume (LUKS): Cairn cannot read encrypted content", fileSystem: "LUKS" };
  if (text(512, 8) === "LABELONE" || text(536, 8) === "LVM2 001")
    return { kind: "unsupported", reason: "an LVM physical volume: browsing logical volumes is not supported yet", fileSystem: "LVM" };
  if (text(3, 8) === "NTFS    ")
    return {
      kind: "unsupported",
      reason: "an NTFS file system: only ext2/3/4 and FAT can be browsed (no NTFS reader for Node exists)",
      fileSystem: "NTFS",
    };
  if (text(3, 8) === "EXFAT   ")
    return { kind: "unsupported", reason: "an exFAT file system: only ext2/3/4 and FAT can be browsed", fileSystem: "exFAT" };
  if (head[510] === 0x55 && head[511] === 0xaa && text(82, 5) === "FAT32") return { kind: "fat", fileSystem: "FAT32" };
  if (head[510] === 0x55 && head[511] === 0xaa && text(54, 3) === "FAT")
    return { kind: "fat", fileSystem: /^FAT1[26]$/.test(text(54, 5)) ? text(54, 5) : "FAT" };
  if (head.length >= 4096 && (text(4086, 10) === "SWAPSPACE2" || text(4086, 10) === "SWAP-SPACE"))
    return { kind: "unsupported", reason: "Linux swap space: it holds no files", fileSystem: "swap" };
  if (head.every((byte) => byte === 0))
    return { kind: "unsupported", reason: "empty (its first bytes are zeros): no file system", fileSystem: null };
  return { kind: "unsupported", reason: "no file system Cairn recognises (ext2/3/4 and FAT are supported)", fileSystem: null };
}

/** ext4 when the superblock asks for an ext4 feature (extents, 64-bit, flex_bg), ext3 when it has a journal, else ext2. */
function extVersion(head: Buffer): string {
  const compat = head.readUInt32LE(1024 + 0x5c);
  const incompat = head.readUInt32LE(1024 + 0x60);
  if (incompat & (0x40 | 0x80 | 0x200)) return "ext4";
  return compat & 0x4 ? "ext3" : "ext2";
}
