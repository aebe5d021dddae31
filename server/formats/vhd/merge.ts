import { access, rename, unlink } from "node:fs/promises";
import { DiskType, FOOTER_SIZE, SECTOR_SIZE } from "./constants.js";
import { encodeFooter } from "./footer.js";
import { type MergeState, readMergeState, writeMergeState } from "./merge-state.js";
import { VhdError } from "./vhd-error.js";
import { VhdFile } from "./vhd-file.js";

export interface MergeVhdOptions {
  /** The older file. It receives the child's blocks in place, takes the child's identity, then replaces the child. */
  parent: string;
  /** The newer, differencing file. After the merge its path holds the merged disk, with the child's uuid. */
  child: string;
  /** The resumable state. @default `${child}.merge.json` */
  statePath?: string;
  /**
   * Called after each durable step. Any error it throws aborts the merge at that point, exactly as a crash
   * would leave it; calling mergeVhdChain again with the same paths resumes.
   */
  onStep?: (step: MergeStep) => void | Promise<void>;
}

export type MergeStep =
  | { kind: "planned"; blocks: number; newBlocks: number }
  | { kind: "footer-moved" }
  | { kind: "block-data"; index: number }
  | { kind: "block"; index: number; done: number; total: number }
  | { kind: "identity" }
  | { kind: "renamed" };

export interface MergeResult {
  /** The merged file: the child's path. */
  path: string;
  /** Blocks of the child merged during this call. */
  mergedBlocks: number;
  resumed: boolean;
}

const CHECKPOINT_EVERY = 32;

function bitSet(bitmap: Buffer, sector: number): boolean {
  return (bitmap[sector >> 3] & (0x80 >> (sector & 7))) !== 0;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * Merges a differencing child into its parent in place, so that the child's path ends up holding the merged disk
 * with the child's uuid (children of the child stay valid; the newest restore point's file name is stable).
 * Cost is proportional to the child's allocated blocks. A small state file makes it resumable; at every moment a
 * crash can happen, the chain (parent, child, ...) reads the same bytes (see ../FORMAT.md, "Merge").
 * @throws VhdError VHD_PARENT_MISMATCH (child not of this parent), VHD_UNSUPPORTED (fixed parent, child larger than
 *   the parent's BAT, different block sizes), VHD_MERGE_STATE (a state file for other paths), and open errors.
 */
export async function mergeVhdChain(options: MergeVhdOptions): Promise<MergeResult> {
  const statePath = options.statePath ?? `${options.child}.merge.json`;
  const onStep = options.onStep ?? (() => {});
  let state = await readMergeState(statePath);
  const resumed = state !== undefined;
  if (state && (state.parent !== options.parent || state.child !== options.child)) {
    throw new VhdError("VHD_MERGE_STATE", `the state file belongs to a merge of ${state.child} into ${state.parent}`, { file: statePath, structure: "merge state" });
  }
  if (state && state.step !== "blocks" && !(await exists(options.parent))) state.step = "renamed";
  if (state?.step === "renamed") {
    await unlink(statePath);
    return { path: options.child, mergedBlocks: 0, resumed };
  }
  const parent = await VhdFile.open(options.parent, { writable: true });
  const child = await VhdFile.open(options.child);
  let merged = 0;
  try {
    if (!state) {
      state = plan(parent, child);
      await writeMergeState(statePath, state);
      await onStep({ kind: "planned", blocks: childBlocks(child).length, newBlocks: (state.footerAt - state.dataEnd) / stride(parent) });
    } else if (parent.footer.uuid !== state.parentUuid && parent.footer.uuid !== state.childUuid) {
      throw new VhdError("VHD_MERGE_STATE", `the parent's uuid ${parent.footer.uuid} is neither ${state.parentUuid} nor ${state.childUuid}`, { file: options.parent, structure: "footer" });
    }
    if (state.step === "blocks") {
      // The footer moves first to where the file will end, so the file stays valid while blocks are appended.
      await parent.handle.write(encodeFooter(parent.footer), 0, FOOTER_SIZE, state.footerAt);
      await onStep({ kind: "footer-moved" });
      merged = await mergeBlocks(parent, child, state, statePath, onStep);
      await takeIdentity(parent, child, state);
      state.step = "identity";
      await writeMergeState(statePath, state);
      await onStep({ kind: "identity" });
    }
  } finally {
    await Promise.all([parent.close(), child.close()]);
  }
  await rename(options.parent, options.child);
  await onStep({ kind: "renamed" });
  await unlink(statePath);
  return { path: options.child, mergedBlocks: merged, resumed };
}

function stride(file: VhdFile): number {
  return file.bitmapSize + file.blockSize;
}

function childBlocks(child: VhdFile): number[] {
  const blocks: number[] = [];
  for (let i = 0; i < child.blockCount; i++) if (child.hasBlock(i)) blocks.push(i);
  return blocks;
}

function plan(parent: VhdFile, child: VhdFile): MergeState {
  const where = { file: child.path, structure: "header" };
  if (parent.diskType === DiskType.Fixed) throw new VhdError("VHD_UNSUPPORTED", "cannot merge into a fixed disk", { file: parent.path, structure: "footer" });
  if (child.diskType !== DiskType.Differencing || child.header?.parentUuid !== parent.footer.uuid) {
    throw new VhdError("VHD_PARENT_MISMATCH", `${child.path} is not a differencing child of ${parent.path} (uuid ${parent.footer.uuid})`, where);
  }
  if (child.blockSize !== parent.blockSize) throw new VhdError("VHD_UNSUPPORTED", `block size ${child.blockSize} differs from the parent's ${parent.blockSize}`, where);
  const blocks = childBlocks(child);
  if (blocks.some((index) => index >= parent.blockCount)) {
    throw new VhdError("VHD_UNSUPPORTED", `the child has blocks past the parent's ${parent.blockCount}-entry BAT (a grown disk)`, where);
  }
  const dataEnd = parent.size - FOOTER_SIZE;
  const newBlocks = blocks.filter((index) => !parent.hasBlock(index)).length;
  return {
    version: 1,
    parent: parent.path,
    child: child.path,
    parentUuid: parent.footer.uuid,
    childUuid: child.footer.uuid,
    dataEnd,
    footerAt: dataEnd + newBlocks * stride(parent),
    nextBlock: 0,
    step: "blocks",
  };
}

async function mergeBlocks(parent: VhdFile, child: VhdFile, state: MergeState, statePath: string, onStep: NonNullable<MergeVhdOptions["onStep"]>): Promise<number> {
  const blocks = childBlocks(child);
  const tableOffset = parent.header?.tableOffset as number;
  // Appended blocks sit contiguously from dataEnd; those already there (a crash after their BAT write) are counted.
  let appended = 0;
  for (let i = 0; i < parent.blockCount; i++) if (parent.hasBlock(i) && parent.bat[i] * SECTOR_SIZE >= state.dataEnd) appended++;
  const differencingParent = parent.diskType === DiskType.Differencing;
  const sectorsPerBlock = parent.blockSize / SECTOR_SIZE;
  let merged = 0;
  for (let i = state.nextBlock; i < blocks.length; i++) {
    const index = blocks[i];
    const childBitmap = await child.readBitmap(index);
    const childData = await child.readBlock(index);
    if (parent.hasBlock(index)) {
      // Only sectors the child holds change, and the chain reads those from the child: safe at any moment.
      const data = await parent.readBlock(index);
      const bitmap = Buffer.from(await parent.readBitmap(index));
      for (let s = 0; s < sectorsPerBlock; s++) {
        if (!bitSet(childBitmap, s)) continue;
        childData.copy(data, s * SECTOR_SIZE, s * SECTOR_SIZE, (s + 1) * SECTOR_SIZE);
        bitmap[s >> 3] |= 0x80 >> (s & 7);
      }
      const at = parent.blockOffset(index) as number;
      await parent.handle.write(data, 0, data.length, at + parent.bitmapSize);
      await parent.handle.datasync();
      await onStep({ kind: "block-data", index });
      await parent.handle.write(bitmap, 0, bitmap.length, at);
      parent.forgetBitmap(index);
    } else {
      // A new block is written where no BAT entry points, then made visible by one 4-byte BAT write.
      let bitmap = childBitmap;
      if (!differencingParent) {
        for (let s = 0; s < sectorsPerBlock; s++) if (!bitSet(childBitmap, s)) childData.fill(0, s * SECTOR_SIZE, (s + 1) * SECTOR_SIZE);
        bitmap = Buffer.alloc(parent.bitmapSize, 0xff);
      }
      const at = state.dataEnd + appended * stride(parent);
      await parent.handle.write(bitmap, 0, bitmap.length, at);
      await parent.handle.write(childData, 0, childData.length, at + parent.bitmapSize);
      await parent.handle.datasync();
      await onStep({ kind: "block-data", index });
      const entry = Buffer.alloc(4);
      entry.writeUInt32BE(at / SECTOR_SIZE);
      await parent.handle.write(entry, 0, 4, tableOffset + index * 4);
      parent.bat[index] = at / SECTOR_SIZE;
      appended++;
    }
    merged++;
    if ((i + 1) % CHECKPOINT_EVERY === 0) {
      state.nextBlock = i + 1;
      await writeMergeState(statePath, state);
    }
    await onStep({ kind: "block", index, done: i + 1, total: blocks.length });
  }
  state.nextBlock = blocks.length;
  await parent.handle.datasync();
  return merged;
}

/** The parent takes the child's uuid, size and time: from here on it *is* the child (a chain skips the stale child). */
async function takeIdentity(parent: VhdFile, child: VhdFile, state: MergeState): Promise<void> {
  const footer = encodeFooter({
    ...parent.footer,
    uuid: child.footer.uuid,
    timestamp: child.footer.timestamp,
    currentSize: child.footer.currentSize,
    originalSize: child.footer.originalSize,
    geometry: child.footer.geometry,
    creatorApplication: child.footer.creatorApplication,
  });
  await parent.handle.write(footer, 0, FOOTER_SIZE, state.footerAt);
  await parent.handle.write(footer, 0, FOOTER_SIZE, 0);
  await parent.handle.datasync();
}
