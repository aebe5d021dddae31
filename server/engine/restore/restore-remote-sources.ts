/**
 * The XVA stream of a remote restore point, ready for `PUT /import`:
 * - XVA: the backup's `.xva` file itself, streamed from the remote (compressed or not, XAPI reads all three);
 * - VHD_CHAIN: an XVA synthesized on the fly: ova.xml built from the VM records of the metadata (restore-ova.ts) and each
 *   disk read through its VHD chain (openBackupDisk, any kind of remote), so a point in the middle of a chain restores
 *   exactly that point (the chain ends at its own VHD). Nothing is written anywhere on the way.
 */
import type { Readable } from "node:stream";
import { createXvaStream, type XvaDiskSource } from "../../formats/xva/index.js";
import type { VhdChain } from "../../formats/vhd/index.js";
import { openBackupDisk } from "../../repository/chain-source.js";
import { xvaReadStream } from "../../repository/xva-source.js";
import type { OpenedBackup } from "../restore-points/restore-point-backup.js";
import { ovaFromMetadata } from "./restore-ova.js";

export interface XvaSource {
  body: Readable;
  /** Exact byte length (a file), when known. */
  length?: number;
  /** What progress is measured against. */
  expectedBytes: number;
  /** Releases what the source holds (chains); idempotent. */
  close(): Promise<void>;
}

export async function xvaFileSource(opened: OpenedBackup): Promise<XvaSource> {
  const path = opened.backup.xvaPath;
  if (!path) throw new Error(`the full backup ${opened.backup.metadataPath} names no XVA file`);
  const { size } = await opened.remote.stat(path);
  const body = await xvaReadStream(opened.remote, opened.backup);
  return { body, length: size, expectedBytes: size, close: async () => void body.destroy() };
}

export async function synthesizedXvaSource(opened: OpenedBackup): Promise<XvaSource> {
  const { backup } = opened;
  if (backup.disks.length === 0) throw new Error(`the delta backup ${backup.metadataPath} has no disk`);
  const chains: VhdChain[] = [];
  const close = async () => {
    await Promise.all(chains.splice(0).map((chain) => chain.close().catch(() => undefined)));
  };
  try {
    for (const disk of backup.disks) chains.push(await openBackupDisk(opened.remote, disk));
    const sizes = new Map(backup.disks.map((disk, i) => [disk.vdiRef, chains[i].virtualSize]));
    const { ova, vdiIds } = ovaFromMetadata(backup.metadata, sizes);
    const sources: XvaDiskSource[] = backup.disks.map((disk, i) => ({
      ref: vdiIds.get(disk.vdiRef)!,
      virtualSize: chains[i].virtualSize,
      read: (offset, length) => chains[i].read(offset, length),
      isZero: (offset, length) => chains[i].isUnallocated(offset, length),
    }));
    const expectedBytes = chains.reduce((sum, chain) => sum + chain.allocatedBlocks().length * chain.blockSize, 0);
    const body = createXvaStream({ ova, disks: sources });
    body.once("close", () => void close());
    return { body, expectedBytes, close };
  } catch (error) {
    await close();
    throw error;
  }
}
