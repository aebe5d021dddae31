import { VhdChain, VhdFile } from "../formats/vhd/index.js";
import type { Remote } from "../remotes/remote.js";
import { localPathsOf } from "./local-path.js";
import type { ScannedDisk } from "./scanner.js";

/**
 * Opens a backup's disk as one random-access virtual disk (restore, file-level restore, XVA synthesis).
 * On a remote with local files (LOCAL) the chain's files are opened directly; on any other remote (S3, SMB) each file is
 * read through {@link Remote.openRandomAccess}, a ranged read per access. The caller closes the chain.
 * @param chain remote paths, root (full) first: {@link ScannedDisk.chain}
 * @throws VhdError when a file is not a valid VHD or the chain does not link (parent uuids), RemoteError NOT_FOUND
 */
export async function openBackupDisk(remote: Remote, chain: string[] | ScannedDisk): Promise<VhdChain> {
  const paths = Array.isArray(chain) ? chain : chain.chain;
  const local = localPathsOf(remote);
  if (local) return VhdChain.open(paths.map(local));
  return VhdChain.openWith(paths.map((path) => async () => VhdFile.openSource(path, await remote.openRandomAccess(path))));
}
