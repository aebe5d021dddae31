import { randomBytes } from "node:crypto";
import { RemoteError } from "./remote-error.js";

/**
 * Paths inside a remote, and the temporary-name convention.
 *
 * A remote path is a relative POSIX path: segments joined by "/", no leading "/", no "." or ".."
 * segment, no empty segment ("a//b"), no NUL and no backslash (a backslash is a separator on SMB, so a
 * name holding one would not mean the same thing on every kind of remote). A single trailing "/" is
 * tolerated and dropped. The root of the remote is "" and is accepted only where a folder is meant.
 */

/** Checks `path` and returns it in canonical form (no trailing "/"). Throws INVALID_PATH otherwise. */
export function checkRemotePath(path: unknown, where: { remote: string; operation: string; allowRoot?: boolean }): string {
  const refuse = (detail: string): never => {
    throw new RemoteError({
      code: "INVALID_PATH",
      remote: where.remote,
      operation: where.operation,
      path: typeof path === "string" ? JSON.stringify(path).slice(1, -1) : undefined,
      detail,
    });
  };
  if (typeof path !== "string") return refuse(`a path must be a string, got ${typeof path}`);
  if (path.includes("\0")) return refuse("the path contains a NUL character");
  if (path.includes("\\")) return refuse("the path contains a backslash");
  if (path.startsWith("/")) return refuse("the path is absolute; paths are relative to the remote's root");
  const trimmed = path.endsWith("/") ? path.slice(0, -1) : path;
  if (trimmed === "" || trimmed === ".") {
    if (where.allowRoot === true) return "";
    return refuse("the path is empty (the root of the remote is not a file)");
  }
  for (const segment of trimmed.split("/")) {
    if (segment === "") return refuse("the path has an empty segment ('//')");
    if (segment === "." || segment === "..") return refuse(`the path has a '${segment}' segment`);
  }
  return trimmed;
}

/** The folder part of a canonical path ("" for a file at the root). */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash === -1 ? "" : path.slice(0, slash);
}

/** The last segment of a canonical path. */
export function baseNameOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** Joins canonical paths, skipping empty ones. */
export function joinRemotePath(...parts: string[]): string {
  return parts.filter((part) => part !== "").join("/");
}

const TEMPORARY_NAME = /^\..+\.tmp-[0-9a-f]{16}$/;

/**
 * A fresh temporary path next to `path`: `dir/.name.tmp-<16 hex>`. An interrupted write leaves at
 * most such a file behind, never a file under the final name; {@link isTemporaryName} recognises it.
 */
export function temporaryPathFor(path: string): string {
  return joinRemotePath(parentOf(path), `.${baseNameOf(path)}.tmp-${randomBytes(8).toString("hex")}`);
}

/** Whether the last segment of `nameOrPath` is a temporary name made by {@link temporaryPathFor}. */
export function isTemporaryName(nameOrPath: string): boolean {
  return TEMPORARY_NAME.test(baseNameOf(nameOrPath));
}
