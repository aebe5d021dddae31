/** FAT12/16/32 through the `fatfs` package, read-only (no writeSectors) over a DiskReader. FAT has no symlinks. */
import { createFileSystem, type FatFs, type FatStats } from "fatfs";
import { baseName, FsPathError, joinFsPath, streamOfReads, type FsEntry, type ReadOnlyFileSystem } from "./file-system.js";
import { SECTOR } from "./partition-table.js";
import type { DiskReader } from "./virtual-disk.js";

export async function openFatFileSystem(reader: DiskReader): Promise<ReadOnlyFileSystem> {
  const fs = createFileSystem(
    {
      sectorSize: SECTOR,
      numSectors: Math.floor(reader.size / SECTOR),
      readSectors: (index, dest, callback) => {
        reader.read(index * SECTOR, dest.length).then(
          (data) => {
            data.copy(dest);
            callback(null);
          },
          (error: Error) => callback(error),
        );
      },
    },
    { ro: true, noatime: true },
  );
  await new Promise<void>((resolve, reject) => {
    fs.on("ready", resolve);
    fs.on("error", reject);
  });
  return new FatFileSystem(fs);
}

function call<T>(fn: (callback: (error: (Error & { code?: string }) | null, value: T) => void) => void, path: string): Promise<T> {
  return new Promise((resolve, reject) =>
    fn((error, value) => {
      if (!error) return resolve(value);
      const code = error.code ?? "";
      reject(
        code.includes("NOENT")
          ? new FsPathError("NOT_FOUND", path)
          : code.includes("NOTDIR")
            ? new FsPathError("NOT_A_DIRECTORY", path)
            : error,
      );
    }),
  );
}

class FatFileSystem implements ReadOnlyFileSystem {
  readonly kind = "fat";

  constructor(private readonly fs: FatFs) {}

  async lstat(path: string): Promise<FsEntry> {
    const stats = await call<FatStats>((cb) => this.fs.stat(path, cb), path).catch((error: { code?: string }) => {
      // fatfs's stat opens the path as a file and fails ISDIR on a folder: open it as a folder ("\\r") and fstat that.
      if (error.code !== "ISDIR") throw error;
      return this.statFolder(path);
    });
    const type = stats.isDirectory() ? "DIRECTORY" : stats.isFile() ? "FILE" : "OTHER";
    const modifiedAt = stats.mtime instanceof Date && !Number.isNaN(stats.mtime.getTime()) ? stats.mtime : null;
    return { name: baseName(path), path, type, size: type === "DIRECTORY" ? 0 : Number(stats.size), modifiedAt };
  }

  async list(path: string): Promise<FsEntry[]> {
    const entry = await this.lstat(path);
    if (entry.type !== "DIRECTORY") throw new FsPathError("NOT_A_DIRECTORY", path);
    const names = await call<string[]>((cb) => this.fs.readdir(path, cb), path);
    const entries: FsEntry[] = [];
    for (const name of names.filter((n) => n !== "." && n !== "..").sort()) entries.push(await this.lstat(joinFsPath(path, name)));
    return entries;
  }

  private async statFolder(path: string): Promise<FatStats> {
    // The root has no directory entry, hence no dates: fatfs's fstat would throw outside any callback (a crash).
    if (path === "/") return { size: 0, mtime: new Date(Number.NaN), isFile: () => false, isDirectory: () => true };
    const fd = await call<number>((cb) => this.fs.open(path, "\\r", cb), path);
    try {
      return await call<FatStats>((cb) => this.fs.fstat(fd, cb), path);
    } finally {
      await new Promise<void>((resolve) => this.fs.close(fd, () => resolve()));
    }
  }

  async readlink(path: string): Promise<string> {
    throw new Error(`${path}: FAT has no symbolic links`);
  }

  createReadStream(path: string) {
    return streamOfReads(async () => {
      const fd = await call<number>((cb) => this.fs.open(path, "r", cb), path);
      return {
        read: (buffer: Buffer, position: number) =>
          new Promise<number>((resolve, reject) =>
            this.fs.read(fd, buffer, 0, buffer.length, position, (error, bytes) => (error ? reject(error) : resolve(bytes))),
          ),
        close: () => new Promise<void>((resolve) => this.fs.close(fd, () => resolve())),
      };
    });
  }

  async close(): Promise<void> {
    // fatfs holds no resource besides the reader, which its owner closes.
  }
}
