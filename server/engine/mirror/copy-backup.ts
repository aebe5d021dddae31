/**
 * Copies one restore point from a source remote to a target remote, file by file, through the repository's own writer
 * (backup-writer.ts): the target's VM folder lock is held as a backup holds it, each data file is streamed under a temporary
 * name (flat memory; either side may be encrypted, each `Remote` decrypts on read and encrypts on write), and the metadata is
 * written last, sealed, so that a copy cut short is never a restore point.
 *
 * What is written is checked before the metadata is: an XVA's SHA-256 and size, as the writer hashed them on the way and
 * as read back from the target, against those the source's metadata records; a VHD's block checksums, as the writer
 * computed them on the way, against the source's `.blocksums`, then every block of the written VHD read back from the
 * target against them. A mismatch aborts the copy (the writer deletes what it wrote) with a message naming the file.
 *
 * The copy's metadata is the source's (VM records, disks, quiesced, compression) with the mirror job's id and schedule: its
 * VHDs go to the mirror's disk folder (`vdis/<mirror job id>/<vdi uuid>/`), and the target's retention of the mirror's
 * schedule then applies to it.
 */
import type { Readable } from "node:stream";
import { messageOf } from "../../errors.js";
import { type VhdBlockChecksums, verifyVhdFile } from "../../formats/vhd/index.js";
import {
  type BackupMetadata,
  type CommitInput,
  type ScannedBackup,
  beginBackup,
  blockChecksumsPathOf,
  digestStream,
  formatBackupTimestamp,
  nameOf,
  parseBackupTimestamp,
  vdiUuidOfPath,
} from "../../repository/index.js";
import { openRemoteVhd, readBlockChecksums } from "../../repository/remote-vhd.js";
import type { Remote } from "../../remotes/remote.js";

export interface CopyOptions {
  mirrorJobId: string;
  /** The mirror's schedule (or "manual"): the copy's metadata carries it, so that its retention counts the copy. */
  scheduleId: string;
  runId: string;
  signal: AbortSignal;
  /** Bytes read from the source so far for this point (monotonic). */
  onBytes?: (bytes: number) => void;
  /** A file that carries no checksum to compare with (written before Cairn recorded them): copied, said once. */
  onUnverifiable?: (message: string) => Promise<void>;
}

export interface CopyResult {
  metadataPath: string;
  /** Bytes read from the source (and written to the target, as plaintext). */
  bytes: number;
}

/** An integrity failure of the copy: the source's file does not read back as it was written, or the target's copy differs. */
export class MirrorIntegrityError extends Error {}

export async function copyBackup(source: Remote, target: Remote, backup: ScannedBackup, options: CopyOptions): Promise<CopyResult> {
  const writer = await beginBackup(target, {
    vmUuid: backup.vmUuid,
    timestamp: backup.timestamp,
    mode: backup.mode,
    jobId: options.mirrorJobId,
    lock: { owner: options.runId },
  });
  let bytes = 0;
  const counted = (stream: Readable) => {
    stream.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      options.onBytes?.(bytes);
    });
    return stream;
  };
  const at = formatBackupTimestamp(backup.timestamp);
  try {
    const metadata = backup.metadata;
    let vhds: Record<string, string> | undefined;
    const disks: NonNullable<BackupMetadata["cairn"]>["disks"] = { ...(metadata.cairn?.disks ?? {}) };
    const isVhdDifferencing: Record<string, boolean> = {};
    if (backup.mode === "full") {
      const xvaPath = backup.xvaPath as string;
      const { size } = await source.stat(xvaPath);
      const written = await writer.writeXva(counted(await source.createReadStream(xvaPath)), { signal: options.signal, sizeHint: size });
      await checkXva(target, xvaPath, written.remotePath, written.integrity, backup.xvaDigest, options);
    } else {
      vhds = {};
      for (const disk of backup.disks) {
        const ownPath = disk.chain[disk.chain.length - 1];
        const vdiUuid = vdiUuidOfPath(ownPath) ?? disk.vdiUuid;
        const { size } = await source.stat(ownPath);
        const written = await writer.writeDisk(vdiUuid, counted(await source.createReadStream(ownPath)), {
          signal: options.signal,
          sizeHint: size,
        });
        await checkVhd(source, target, ownPath, disk.checksums[disk.checksums.length - 1], written.remotePath, options);
        vhds[disk.vdiRef] = written.path;
        // Described as it is copied: a VHD the source's retention merged may have become a whole disk since it was written.
        const differencing = disk.chain.length > 1;
        isVhdDifferencing[disk.vdiRef] = differencing;
        const parentTimestamp = differencing ? parseBackupTimestamp(nameOf(disk.chain[disk.chain.length - 2])) : undefined;
        const known = disks[disk.vdiRef];
        disks[disk.vdiRef] = {
          vdiUuid: known?.vdiUuid ?? disk.vdiUuid,
          ...(known?.name !== undefined ? { name: known.name } : disk.name !== null ? { name: disk.name } : {}),
          virtualSize: known?.virtualSize ?? disk.virtualSize,
          differencing,
          ...(parentTimestamp !== undefined ? { parentTimestamp } : {}),
        };
      }
    }
    options.signal.throwIfAborted();
    const input: CommitInput = {
      scheduleId: options.scheduleId,
      vm: metadata.vm,
      vmSnapshot: metadata.vmSnapshot,
      tags: metadata.tags ?? [],
      ...(backup.mode === "delta"
        ? {
            vbds: metadata.vbds ?? {},
            vdis: metadata.vdis ?? {},
            vifs: metadata.vifs ?? {},
            vtpms: metadata.vtpms ?? [],
            vhds,
            isVhdDifferencing,
          }
        : {}),
      // Only what describes the backup: the source's immutability window, seal and checksums are the source's own.
      cairn: {
        quiesced: metadata.cairn?.quiesced ?? backup.quiesced ?? false,
        compression: metadata.cairn?.compression ?? "none",
        ...(Object.keys(disks).length > 0 ? { disks } : {}),
      },
    };
    await writer.commit(input);
    return { metadataPath: writer.metadataPath, bytes };
  } catch (error) {
    await writer.abort().catch(() => undefined);
    if (error instanceof MirrorIntegrityError || options.signal.aborted) throw error;
    throw new Error(`copy of the restore point of ${at}: ${messageOf(error)}`, { cause: error });
  }
}

async function checkXva(
  target: Remote,
  sourcePath: string,
  targetPath: string,
  written: { sha256?: string; size?: number },
  recorded: { sha256: string; size: number } | undefined,
  options: CopyOptions,
): Promise<void> {
  if (!recorded) {
    await options.onUnverifiable?.(`${sourcePath} carries no checksum (written before Cairn 0.2): copied without a comparison`);
    return;
  }
  if (written.sha256 !== recorded.sha256 || written.size !== recorded.size)
    throw new MirrorIntegrityError(
      `${sourcePath} on the source does not read back as it was written (SHA-256 ${written.sha256}, ${written.size} bytes; recorded ${recorded.sha256}, ${recorded.size} bytes): it is damaged there, so it was not copied. Run a verify of the source to see what else is damaged`,
    );
  const readBack = digestStream(await target.createReadStream(targetPath));
  readBack.stream.resume();
  const copy = await readBack.digest;
  if (copy.sha256 !== recorded.sha256 || copy.size !== recorded.size)
    throw new MirrorIntegrityError(
      `${targetPath} on the target reads back differently from what was written (SHA-256 ${copy.sha256}, ${copy.size} bytes; expected ${recorded.sha256}, ${recorded.size} bytes): check the target's storage, then run the mirror again`,
    );
}

async function checkVhd(
  source: Remote,
  target: Remote,
  sourcePath: string,
  sourceSumsPath: string | undefined,
  targetPath: string,
  options: CopyOptions,
): Promise<void> {
  const copied = await readBlockChecksums(target, blockChecksumsPathOf(targetPath));
  if (!copied) throw new MirrorIntegrityError(`${targetPath} on the target has no block checksums after its copy`);
  const recorded = await readBlockChecksums(source, sourceSumsPath);
  if (!recorded)
    await options.onUnverifiable?.(`${sourcePath} carries no block checksums (written before Cairn 0.2): copied without a comparison`);
  else {
    const difference = differenceOf(recorded, copied);
    if (difference)
      throw new MirrorIntegrityError(
        `${sourcePath} on the source does not read back as it was written (${difference}): it is damaged there, so it was not copied. Run a verify of the source to see what else is damaged`,
      );
  }
  // Every block of the copy, read back from the target, against the checksums it was written with.
  const file = await openRemoteVhd(target, targetPath, copied);
  try {
    const outcome = await verifyVhdFile(file, { signal: options.signal });
    if (outcome.damaged.length > 0) {
      const first = outcome.damaged[0];
      throw new MirrorIntegrityError(
        `${targetPath} on the target reads back differently from what was written (block ${first.block}: ${first.reason}; ${outcome.damaged.length} damaged block(s)): check the target's storage, then run the mirror again`,
      );
    }
  } finally {
    await file.close();
  }
}

/** How two block checksum tables differ, or undefined when they describe the same VHD with the same blocks. */
function differenceOf(recorded: VhdBlockChecksums, copied: VhdBlockChecksums): string | undefined {
  if (recorded.vhdUuid !== copied.vhdUuid) return `its uuid is ${copied.vhdUuid}, ${recorded.vhdUuid} was recorded`;
  if (recorded.blockSize !== copied.blockSize) return `its block size is ${copied.blockSize}, ${recorded.blockSize} was recorded`;
  const count = Math.max(recorded.entries.length, copied.entries.length);
  for (let block = 0; block < count; block++) {
    const a = recorded.entries[block];
    const b = copied.entries[block];
    if (a === undefined && b === undefined) continue;
    if (a === undefined || b === undefined || !a.equals(b)) return `block ${block} differs from its recorded checksum`;
  }
  return undefined;
}
