/**
 * Streams chosen files and folders of a file system as a tar.gz (tar-stream + zlib) or a zip (archiver) into a writable
 * (an HTTP response): one file at a time, each read in pieces from the disk as the client takes them, so memory stays flat
 * and nothing is written to disk. Entry names are the paths inside the file system without the leading `/`; folders are
 * walked recursively; symlinks are stored as symlinks (their target as text), never followed; other types are skipped.
 */
import { once } from "node:events";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { joinFsPath, type FsEntry, type ReadOnlyFileSystem } from "./file-system.js";

export type ArchiveFormat = "TAR_GZ" | "ZIP";

/** Each entry to store, depth first, parents before children. */
async function* walk(fs: ReadOnlyFileSystem, paths: string[]): AsyncGenerator<FsEntry & { linkTarget?: string }> {
  const seen = new Set<string>();
  const visit = async function* (entry: FsEntry): AsyncGenerator<FsEntry & { linkTarget?: string }> {
    if (seen.has(entry.path)) return;
    seen.add(entry.path);
    if (entry.type === "SYMLINK") {
      yield { ...entry, linkTarget: await fs.readlink(entry.path) };
    } else if (entry.type === "DIRECTORY") {
      yield entry;
      for (const child of await fs.list(entry.path)) yield* visit({ ...child, path: joinFsPath(entry.path, child.name) });
    } else if (entry.type === "FILE") {
      yield entry;
    }
  };
  for (const path of paths) yield* visit(await fs.lstat(path));
}

function entryName(path: string): string {
  return path.replace(/^\/+/, "") || ".";
}

/** Writes the archive into `output` and resolves when it is complete (rejects on the first error, output destroyed). */
export async function writeArchive(
  fs: ReadOnlyFileSystem,
  paths: string[],
  format: ArchiveFormat,
  output: Writable,
): Promise<{ files: number; bytes: number }> {
  return format === "ZIP" ? writeZip(fs, paths, output) : writeTarGz(fs, paths, output);
}

// archiver and tar-stream (and what they pull in) are imported on the first download, not by every Cairn at start (idle memory).
async function writeTarGz(fs: ReadOnlyFileSystem, paths: string[], output: Writable): Promise<{ files: number; bytes: number }> {
  const { default: tarStream } = await import("tar-stream");
  const pack = tarStream.pack();
  const done = pipeline(pack, createGzip(), output);
  let files = 0;
  let bytes = 0;
  try {
    for await (const entry of walk(fs, paths)) {
      const mtime = entry.modifiedAt ?? new Date(0);
      const name = entryName(entry.path);
      if (entry.type === "DIRECTORY") {
        pack.entry({ name, type: "directory", mtime, mode: 0o755 });
      } else if (entry.type === "SYMLINK") {
        pack.entry({ name, type: "symlink", linkname: entry.linkTarget, mtime, mode: 0o777 });
      } else {
        const sink = pack.entry({ name, type: "file", size: entry.size, mtime, mode: 0o644 });
        await pipeline(fs.createReadStream(entry.path), sink);
        files++;
        bytes += entry.size;
      }
    }
    pack.finalize();
  } catch (error) {
    pack.destroy(error as Error);
    // `done` now rejects with this same error (or the sink's, which it caused): the error thrown below says it.
    await done.catch(() => undefined);
    throw error;
  }
  await done;
  return { files, bytes };
}

async function writeZip(fs: ReadOnlyFileSystem, paths: string[], output: Writable): Promise<{ files: number; bytes: number }> {
  const { ZipArchive } = await import("archiver");
  const archive = new ZipArchive({ zlib: { level: 6 } });
  const done = pipeline(archive, output);
  let files = 0;
  let bytes = 0;
  try {
    for await (const entry of walk(fs, paths)) {
      const date = entry.modifiedAt ?? new Date(0);
      const name = entryName(entry.path);
      const stored = once(archive, "entry");
      if (entry.type === "DIRECTORY") {
        archive.append(Buffer.alloc(0), { name: `${name}/`, date });
      } else if (entry.type === "SYMLINK") {
        archive.symlink(name, entry.linkTarget ?? "");
      } else {
        // One file at a time: the next file is opened only when this one is stored.
        const source: Readable = fs.createReadStream(entry.path);
        source.once("error", (error) => archive.emit("error", error));
        archive.append(source, { name, date });
        files++;
        bytes += entry.size;
      }
      await Promise.race([stored, once(archive, "error").then(([error]) => Promise.reject(error))]);
    }
    await archive.finalize();
  } catch (error) {
    archive.destroy(error as Error);
    // `done` now rejects with this same error (or the sink's, which it caused): the error thrown below says it.
    await done.catch(() => undefined);
    throw error;
  }
  await done;
  return { files, bytes };
}
