import type { Readable } from "node:stream";
import type { Remote } from "../remotes/remote.js";
import { verifyingStream } from "./file-digest.js";
import { RepositoryError, RepositoryErrorReason } from "./repository-error.js";
import type { ScannedBackup } from "./scanner.js";

/**
 * The XVA file of a full backup, as a stream checked against the SHA-256 recorded when it was written (formatVersion 2):
 * a damaged file makes the stream fail before its end, with an integrity error naming the file, so an import never
 * completes from wrong bytes. A backup written before checksums were recorded streams unchecked.
 */
export async function xvaReadStream(
  remote: Remote,
  backup: Pick<ScannedBackup, "xvaPath" | "xvaDigest" | "metadataPath">,
): Promise<Readable> {
  const path = backup.xvaPath;
  if (!path)
    throw new RepositoryError(RepositoryErrorReason.Incomplete, `the full backup ${backup.metadataPath} names no XVA file`, {
      path: backup.metadataPath,
    });
  const body = await remote.createReadStream(path);
  if (!backup.xvaDigest) return body;
  return verifyingStream(
    body,
    backup.xvaDigest,
    (detail) =>
      new RepositoryError(
        RepositoryErrorReason.Damaged,
        `${path} is damaged: ${detail}; this backup cannot be restored as it is, restore another restore point`,
        { path },
      ),
  );
}
