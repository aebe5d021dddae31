/**
 * One read-only file system inside a backed-up disk, whatever its kind (ext2/3/4 through ext2fs, FAT through fatfs):
 * lstat, list a folder, read a symlink's target, stream a file's bytes. Paths are absolute POSIX paths inside the file
 * system, already normalised by {@link normaliseFsPath}. Symlinks are reported, never followed by Cairn.
 */
import { Readable } from "node:stream";
import { InputError } from "../errors.js";

export type EntryType = "FILE" | "DIRECTORY" | "SYMLINK" | "OTHER";

export interface FsEntry {
  name: string;
  path: string;
  type: EntryType;
  size: number;
  modifiedAt: Date | null;
}

export interface ReadOnlyFileSystem {
  /** "ext4" (any of ext2/3/4) or "fat". */
  readonly kind: string;
  /** @throws FsPathError NOT_FOUND */
  lstat(path: string): Promise<FsEntry>;
  /** Entries of a folder, sorted by name. @throws FsPathError NOT_FOUND, NOT_A_DIRECTORY */
  list(path: string): Promise<FsEntry[]>;
  readlink(path: string): Promise<string>;
  /** The file's bytes, read in pieces as the consumer pulls (never the whole file in memory). */
  createReadStream(path: string): Readable;
  close(): Promise<void>;
}

export class FsPathError extends Error {
  constructor(
    readonly reason: "NOT_FOUND" | "NOT_A_DIRECTORY",
    readonly path: string,
  ) {
    super(reason === "NOT_FOUND" ? `${path} does not exist in this file system` : `${path} is not a folder`);
  }
}

/**
 * `/a/b/c` from what a client sends: absolute, `/`-separated; `.` and empty segments are dropped; `..` and NUL are refused
 * (no way out of the selected file system, no trick with the host's path rules: these paths are never host paths).
 * @throws InputError naming `field`
 */
export function normaliseFsPath(path: unknown, field: string): string {
  if (typeof path !== "string" || !path.startsWith("/"))
    throw new InputError(
      field,
      `must be an absolute path inside the file system, such as "/etc" (got ${JSON.stringify(path)?.slice(0, 80)})`,
    );
  if (path.includes("\u0000")) throw new InputError(field, "must not contain a NUL character");
  if (path.length > 4096) throw new InputError(field, "must be at most 4096 characters");
  const segments = path.split("/").filter((segment) => segment !== "" && segment !== ".");
  if (segments.includes(".."))
    throw new InputError(
      field,
      `must not contain ".." (got ${JSON.stringify(path).slice(0, 80)}): give the path from the file system's root`,
    );
  return `/${segments.join("/")}`;
}

export function joinFsPath(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

export function baseName(path: string): string {
  return path === "/" ? "/" : path.slice(path.lastIndexOf("/") + 1);
}

const PIECE = 256 * 1024;

/** A Readable over positional reads of an open file: one piece per pull, closed at the end or on destroy. */
export function streamOfReads(
  open: () => Promise<{ read(buffer: Buffer, position: number): Promise<number>; close(): Promise<void> }>,
): Readable {
  let file: Awaited<ReturnType<typeof open>> | undefined;
  let position = 0;
  const closeFile = async () => {
    const current = file;
    file = undefined;
    await current?.close();
  };
  return new Readable({
    highWaterMark: PIECE,
    async read() {
      try {
        file ??= await open();
        const buffer = Buffer.allocUnsafe(PIECE);
        const bytes = await file.read(buffer, position);
        position += bytes;
        if (bytes === 0) {
          await closeFile();
          this.push(null);
        } else {
          this.push(buffer.subarray(0, bytes));
        }
      } catch (error) {
        this.destroy(error as Error);
      }
    },
    destroy(error, callback) {
      closeFile().then(
        () => callback(error),
        (closeError) => callback(error ?? closeError),
      );
    },
  });
}
