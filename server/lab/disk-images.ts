import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { access, mkdir, mkdtemp, open, rename, rm, truncate, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { DISK_BLOCK_SIZE, type DiskStore } from "./disk-store.js";
import { knownFiles } from "./known-files.js";

const run = promisify(execFile);
const SECTOR = 512;
const PARTITION_START = 2048; // sectors: 1 MiB, as partitioning tools align
const IMAGE_VERSION = "v1";

/** A tool is missing or failed: the lab falls back to a plain data disk with a warning. */
export class DiskImageError extends Error {
  readonly code = "LAB_DISK_IMAGE_FAILED";
}

async function tool(command: string, args: string[], input?: string): Promise<void> {
  try {
    const child = run(command, args, { env: { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` } });
    if (input !== undefined) {
      child.child.stdin?.end(input);
    }
    await child;
  } catch (error) {
    const detail =
      (error as NodeJS.ErrnoException).code === "ENOENT"
        ? "not installed"
        : ((error as { stderr?: string }).stderr ?? String(error)).trim();
    throw new DiskImageError(`${command} failed: ${detail}`, { cause: error });
  }
}

async function writeTree(root: string, files: Map<string, Buffer>): Promise<void> {
  for (const [path, content] of files) {
    const target = join(root, path);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, content);
  }
}

/** The cached image path for a kind, size and seed; built once (atomically) and reused afterwards. */
async function cachedImage(
  cacheDir: string,
  kind: string,
  size: number,
  seed: string,
  build: (path: string, work: string) => Promise<void>,
): Promise<string> {
  const key = createHash("sha256").update(`${IMAGE_VERSION}\0${kind}\0${size}\0${seed}`).digest("hex").slice(0, 16);
  const path = join(cacheDir, `${kind}-${key}.img`);
  try {
    await access(path);
    return path;
  } catch {
    // Not built yet: build below.
  }
  await mkdir(cacheDir, { recursive: true });
  const work = await mkdtemp(join(cacheDir, `building-${kind}-`));
  try {
    const image = join(work, "disk.img");
    await truncate(await createEmpty(image), size);
    await build(image, work);
    await rename(image, path);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return path;
}

async function createEmpty(path: string): Promise<string> {
  await (await open(path, "w")).close();
  return path;
}

function checkSize(kind: string, size: number): void {
  if (size < 4 * 1024 * 1024) throw new DiskImageError(`${kind} disks need at least 4 MiB, got ${size} bytes`);
}

/** An MBR disk of `size` bytes whose partition 1 (from 1 MiB to the end) holds an ext4 file system with {@link knownFiles}. */
export function ext4MbrImage(cacheDir: string, size: number, seed: string): Promise<string> {
  checkSize("ext4", size);
  return cachedImage(cacheDir, "ext4-mbr", size, seed, async (image, work) => {
    const sectors = Math.floor(size / SECTOR) - PARTITION_START;
    await tool("sfdisk", ["-q", image], `label: dos\nstart=${PARTITION_START}, size=${sectors}, type=83, bootable\n`);
    const tree = join(work, "tree");
    await writeTree(tree, knownFiles(seed).ext4);
    await tool("mkfs.ext4", [
      "-q",
      "-F",
      "-L",
      "cairn-root",
      "-E",
      `offset=${PARTITION_START * SECTOR},root_owner=0:0`,
      "-d",
      tree,
      image,
      `${Math.floor((sectors * SECTOR) / 1024)}k`,
    ]);
  });
}

/** A GPT disk of `size` bytes whose partition 1 (1 MiB aligned) holds a FAT file system with {@link knownFiles}. */
export function fatGptImage(cacheDir: string, size: number, seed: string): Promise<string> {
  checkSize("fat", size);
  return cachedImage(cacheDir, "fat-gpt", size, seed, async (image, work) => {
    const total = Math.floor(size / SECTOR);
    const sectors = Math.floor((total - PARTITION_START - 34) / 2048) * 2048;
    await tool(
      "sfdisk",
      ["-q", image],
      `label: gpt\nstart=${PARTITION_START}, size=${sectors}, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="cairn-data"\n`,
    );
    await tool("mkfs.vfat", ["-n", "CAIRNFAT", `--offset=${PARTITION_START}`, image, String(Math.floor((sectors * SECTOR) / 1024))]);
    const tree = join(work, "tree");
    await writeTree(tree, knownFiles(seed).fat);
    const target = `${image}@@${PARTITION_START * SECTOR}`;
    const top = [...new Set([...knownFiles(seed).fat.keys()].map((path) => path.split("/")[1]))];
    await tool("mcopy", ["-s", "-Q", "-i", target, ...top.map((name) => join(tree, name)), "::/"]);
  });
}

/** Copies a raw image into a disk of the store, allocating only its non-zero blocks. */
export async function importImage(disks: DiskStore, disk: string, image: string): Promise<void> {
  const handle = await open(image, "r");
  try {
    const buffer = Buffer.alloc(DISK_BLOCK_SIZE);
    const size = disks.virtualSize(disk);
    for (let offset = 0; offset < size; offset += DISK_BLOCK_SIZE) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(DISK_BLOCK_SIZE, size - offset), offset);
      if (bytesRead === 0) break;
      await disks.write(disk, offset, Buffer.from(buffer.subarray(0, bytesRead)));
    }
  } finally {
    await handle.close();
  }
}
