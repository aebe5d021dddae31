/** ext2/3/4 through the `ext2fs` package (libext2fs in WASM), read-only over a DiskReader. */
import type { Ext2Fs, Ext2Stats } from "ext2fs";
import { baseName, FsPathError, joinFsPath, streamOfReads, type EntryType, type FsEntry, type ReadOnlyFileSystem } from "./file-system.js";
import { ReaderDisk, type DiskReader } from "./virtual-disk.js";

type Ext2fsModule = typeof import("ext2fs");

let loaded: Promise<Ext2fsModule> | undefined;

/**
 * Loads ext2fs once. Its emscripten runtime installs process-wide `uncaughtException` and `unhandledRejection` handlers that
 * rethrow (any unhandled rejection anywhere in Cairn would then kill the server): they are removed right after loading.
 */
function loadExt2fs(): Promise<Ext2fsModule> {
  loaded ??= (async () => {
    const emitter = process as unknown as NodeJS.EventEmitter;
    const events = ["uncaughtException", "unhandledRejection"];
    const before = new Map(events.map((event) => [event, new Set(emitter.listeners(event))]));
    try {
      const module = await import("ext2fs");
      return ((module as { default?: Ext2fsModule }).default ?? module) as Ext2fsModule;
    } finally {
      for (const event of events) {
        for (const listener of emitter.listeners(event))
          if (!before.get(event)!.has(listener)) emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
  })();
  return loaded;
}

export async function openExtFileSystem(reader: DiskReader): Promise<ReadOnlyFileSystem> {
  const ext2fs = await loadExt2fs();
  const fs = await ext2fs.mount(new ReaderDisk(reader), 0);
  return new ExtFileSystem(fs, ext2fs);
}

function typeOf(stats: Ext2Stats): EntryType {
  if (stats.isSymbolicLink()) return "SYMLINK";
  if (stats.isDirectory()) return "DIRECTORY";
  if (stats.isFile()) return "FILE";
  return "OTHER";
}

function mapError(error: unknown, path: string): unknown {
  const code = (error as { code?: string }).code;
  if (code === "ENOENT") return new FsPathError("NOT_FOUND", path);
  if (code === "ENOTDIR") return new FsPathError("NOT_A_DIRECTORY", path);
  return error;
}

class ExtFileSystem implements ReadOnlyFileSystem {
  readonly kind = "ext4";

  constructor(
    private readonly fs: Ext2Fs,
    private readonly ext2fs: Ext2fsModule,
  ) {}

  async lstat(path: string): Promise<FsEntry> {
    try {
      const stats = await this.fs.promises.lstat(path);
      return {
        name: baseName(path),
        path,
        type: typeOf(stats),
        size: Number(stats.size),
        modifiedAt: stats.mtime instanceof Date ? stats.mtime : null,
      };
    } catch (error) {
      throw mapError(error, path);
    }
  }

  async list(path: string): Promise<FsEntry[]> {
    const entry = await this.lstat(path);
    if (entry.type !== "DIRECTORY") throw new FsPathError("NOT_A_DIRECTORY", path);
    let names: string[];
    try {
      names = await this.fs.promises.readdir(path);
    } catch (error) {
      throw mapError(error, path);
    }
    const entries: FsEntry[] = [];
    for (const name of names.filter((n) => n !== "." && n !== "..").sort()) entries.push(await this.lstat(joinFsPath(path, name)));
    return entries;
  }

  readlink(path: string): Promise<string> {
    return this.fs.promises.readlink(path);
  }

  createReadStream(path: string) {
    // open + read: ext2fs's readFile decodes to a string and loses binary bytes.
    return streamOfReads(async () => {
      const handle = await this.fs.promises.open(path, "r").catch((error: unknown) => Promise.reject(mapError(error, path)));
      return {
        read: async (buffer: Buffer, position: number) => (await handle.read(buffer, 0, buffer.length, position)).bytesRead,
        close: () => handle.close(),
      };
    });
  }

  close(): Promise<void> {
    return this.ext2fs.umount(this.fs);
  }
}
