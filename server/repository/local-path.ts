import { join } from "node:path";
import type { Remote } from "../remotes/remote.js";

/** A remote whose files are also files of this machine (a LOCAL remote, or a mounted share). */
export interface LocalPathRemote extends Remote {
  /** The absolute local path of a remote path. */
  localPath(path: string): string;
}

/**
 * How to reach a remote's files as local files, or undefined when they are not local. VHD merges (and the fastest chain
 * reads) need local files: a remote may offer an optional `localPath(path)`; a LOCAL remote (`LocalRemote`, whose `root`
 * is its folder) is adapted here without changing server/remotes.
 */
export function localPathsOf(remote: Remote): ((path: string) => string) | undefined {
  const candidate = remote as Partial<LocalPathRemote> & { root?: unknown };
  if (typeof candidate.localPath === "function") return (path) => (candidate.localPath as (p: string) => string).call(remote, path);
  if (remote.kind === "LOCAL" && typeof candidate.root === "string") {
    const root = candidate.root;
    return (path) => join(root, path);
  }
  return undefined;
}
