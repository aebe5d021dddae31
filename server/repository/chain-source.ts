import { VhdChain } from "../formats/vhd/index.js";
import type { Remote } from "../remotes/remote.js";
import { localPathsOf } from "./local-path.js";
import { openRemoteVhd, readBlockChecksums } from "./remote-vhd.js";
import type { ScannedDisk } from "./scanner.js";

/**
 * Opens a backup's disk as one random-access virtual disk (restore, file-level restore, XVA synthesis, verify).
 * Every VHD with block checksums (`disk.checksums`) is read verified: a block whose bytes differ from what was written
 * fails the read with VHD_CHECKSUM_MISMATCH naming the file and block, never returning the wrong bytes.
 * On a remote with local files (LOCAL) the chain's files are opened directly; on any other remote (S3, SMB) each file is
 * read through {@link Remote.openRandomAccess}, a ranged read per access. The caller closes the chain.
 * @param chain remote paths, root (full) first ({@link ScannedDisk.chain}, unverified), or the scanned disk
 * @throws VhdError when a file is not a valid VHD, the chain does not link (parent uuids), or a checksum file is damaged
 *   (VHD_CHECKSUM_FILE); RemoteError NOT_FOUND
 */
export async function openBackupDisk(remote: Remote, chain: string[] | ScannedDisk): Promise<VhdChain> {
  const paths = Array.isArray(chain) ? chain : chain.chain;
  const sumsPaths = Array.isArray(chain) ? [] : chain.checksums;
  const checksums = await Promise.all(paths.map((_, i) => readBlockChecksums(remote, sumsPaths[i])));
  const local = localPathsOf(remote);
  if (local) return VhdChain.open(paths.map(local), { checksums });
  return VhdChain.openWith(paths.map((path, i) => () => openRemoteVhd(remote, path, checksums[i])));
}
