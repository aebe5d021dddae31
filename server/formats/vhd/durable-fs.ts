/**
 * File operations that are on the disk when they return, for the merge's small files and renames: a rename or an unlink
 * is only durable once its directory is fsync'd, and a file written then renamed must be fsync'd before the rename, or a
 * crash can leave the new name on an empty file.
 */
import { open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";

/** Some file systems cannot fsync a directory (EINVAL) and some platforms cannot open one (EISDIR): nothing to do there. */
const DIRECTORY_SYNC_UNSUPPORTED = new Set(["EINVAL", "EISDIR", "ENOTSUP"]);

export async function fsyncDirectory(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, "r");
    await handle.sync();
  } catch (error) {
    if (!DIRECTORY_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? "")) throw error;
  } finally {
    await handle?.close();
  }
}

async function fsyncDirectoriesOf(...paths: string[]): Promise<void> {
  for (const dir of new Set(paths.map((path) => dirname(path)))) await fsyncDirectory(dir);
}

/** Writes `bytes` to `${path}.tmp`, fsyncs it, renames it over `path`, fsyncs the directory: `path` is old or new, never torn. */
export async function writeFileDurably(path: string, bytes: Buffer | string): Promise<void> {
  const temporary = `${path}.tmp`;
  const handle = await open(temporary, "w");
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
  await fsyncDirectoriesOf(path);
}

export async function renameDurably(from: string, to: string): Promise<void> {
  await rename(from, to);
  await fsyncDirectoriesOf(from, to);
}

/** Removes `path` (already gone is fine) and fsyncs its directory. */
export async function unlinkDurably(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await fsyncDirectoriesOf(path);
}
