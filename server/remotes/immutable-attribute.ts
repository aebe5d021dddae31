import { execFile } from "node:child_process";
import { unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { RemoteError } from "./remote-error.js";
import { temporaryPathFor } from "./remote-path.js";

/**
 * The immutable attribute of Linux file systems (FS_IMMUTABLE_FL), set and lifted with e2fsprogs' `chattr`: Node.js has no
 * ioctl, and the attribute is what stops even root from writing, renaming or deleting a file (only root, through the
 * CAP_LINUX_IMMUTABLE capability, can lift it again). Used by the LOCAL remote's immutability.
 */
const run = promisify(execFile);

/** Files per chattr call: one process for many files, under the command-line length limits. */
const BATCH = 200;

export async function setImmutable(absolutePaths: string[], on: boolean): Promise<void> {
  for (let start = 0; start < absolutePaths.length; start += BATCH) {
    await run("chattr", [on ? "+i" : "-i", "--", ...absolutePaths.slice(start, start + BATCH)]);
  }
}

/** Whether a file carries the immutable attribute (`lsattr -d`; its flags column has an `i`). */
export async function isImmutable(absolutePath: string): Promise<boolean> {
  const { stdout } = await run("lsattr", ["-d", "--", absolutePath]);
  const flags = stdout.trim().split(/\s+/)[0] ?? "";
  return flags.includes("i");
}

/**
 * Why this process cannot make files immutable in `root`, or undefined when it can: it must be root (the attribute needs
 * CAP_LINUX_IMMUTABLE), `chattr` must be installed, and the file system must keep the attribute (ext4, xfs, btrfs do;
 * tmpfs, most FUSE and network mounts do not). Proven by protecting a probe file and releasing it.
 */
export async function immutabilityProblem(root: string): Promise<string | undefined> {
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    return "Cairn does not run as root, and only root can make files immutable (the immutable attribute); run Cairn as root or set the window to 0";
  }
  const probe = join(root, temporaryPathFor("cairn-immutability-probe"));
  await writeFile(probe, "probe");
  let set = false;
  try {
    await setImmutable([probe], true);
    set = true;
    if (!(await isImmutable(probe)))
      return `the file system of ${root} does not keep the immutable attribute; use a folder on ext4, xfs or btrfs`;
    return undefined;
  } catch (error) {
    const detail = commandFailure(error);
    if (detail.missing) return "the chattr command (package e2fsprogs) is not installed: install it, or set the window to 0";
    return `the file system of ${root} does not support the immutable attribute (${detail.text}); use a folder on ext4, xfs or btrfs`;
  } finally {
    if (set) await setImmutable([probe], false).catch(() => undefined);
    await unlink(probe).catch(() => undefined);
  }
}

function commandFailure(error: unknown): { missing: boolean; text: string } {
  const failure = error as NodeJS.ErrnoException & { stderr?: string };
  if (failure.code === "ENOENT") return { missing: true, text: "chattr not found" };
  const text = (failure.stderr ?? failure.message ?? String(error)).trim().split("\n")[0];
  return { missing: false, text };
}

/** A failed chattr as the remote's error. */
export function attributeError(error: unknown, where: { remote: string; operation: string; path: string }): RemoteError {
  const detail = commandFailure(error);
  return new RemoteError({
    code: detail.missing ? "INVALID_CONFIG" : "IO",
    ...where,
    detail: detail.missing ? "the chattr command (package e2fsprogs) is not installed" : detail.text,
    hint: detail.missing ? "install e2fsprogs" : undefined,
  });
}
