import { seededBytes } from "./seeded-random.js";

/** The files the lab's seeded file systems hold (path inside the file system → content), per seed. */
export interface KnownFiles {
  /** On the ext4 partition (partition 1, MBR) of the VM `web-ext4`. */
  ext4: Map<string, Buffer>;
  /** On the FAT partition (partition 1, GPT) of the VM `win-fat`. */
  fat: Map<string, Buffer>;
}

/** What file-level restore tests can expect to find: deterministic for a seed. */
export function knownFiles(seed: string): KnownFiles {
  const ext4 = new Map<string, Buffer>([
    ["/etc/hostname", Buffer.from("web-ext4\n")],
    ["/etc/os-release", Buffer.from('PRETTY_NAME="Cairn lab Linux"\nID=cairnlab\n')],
    ["/home/alice/notes.txt", Buffer.from(`Notes of alice, seed ${seed}.\nBack up everything.\n`)],
    ["/var/lib/app/data.bin", seededBytes(seed, "ext4:/var/lib/app/data.bin", 96 * 1024)],
    ["/README.txt", Buffer.from("This file system was built by the Cairn lab with mkfs.ext4 -d.\n")],
  ]);
  const fat = new Map<string, Buffer>([
    ["/README.TXT", Buffer.from("This FAT file system was built by the Cairn lab (mkfs.vfat + mcopy).\r\n")],
    ["/EFI/BOOT/BOOTX64.EFI", seededBytes(seed, "fat:/EFI/BOOT/BOOTX64.EFI", 32 * 1024)],
    ["/DOCS/REPORT.TXT", Buffer.from(`Quarterly report, seed ${seed}.\r\n`)],
  ]);
  return { ext4, fat };
}
