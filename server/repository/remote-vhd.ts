import { VhdFile, type VhdBlockChecksums, decodeBlockChecksums } from "../formats/vhd/index.js";
import type { Remote } from "../remotes/remote.js";

/**
 * One VHD of a remote read through {@link Remote.openRandomAccess} (on every kind, LOCAL too): messages then name it by
 * its path on the remote, never by a path of this machine. With `checksums`, every block read is verified.
 */
export async function openRemoteVhd(remote: Remote, path: string, checksums?: VhdBlockChecksums): Promise<VhdFile> {
  return VhdFile.openSource(path, await remote.openRandomAccess(path), { checksums });
}

/** The block checksums in a `.blocksums` file, or undefined when there is none. */
export async function readBlockChecksums(remote: Remote, path: string | undefined): Promise<VhdBlockChecksums | undefined> {
  if (path === undefined) return undefined;
  return decodeBlockChecksums(await remote.readFile(path), { file: path });
}
