import { HashPacker, type VhdBlockChecksums, checksumOfBlock } from "./block-checksums.js";
import { DiskType, FOOTER_SIZE, SECTOR_SIZE } from "./constants.js";
import { encodeFooter } from "./footer.js";
import { finishMerge, openChild, openParent } from "./merge-finish.js";
import {
  type MergeSidecars,
  checkParentTable,
  mergeSidecars,
  mergedTable,
  mergedTableIsReady,
  readTableIfPresent,
  rebuildMergedTable,
  saveMergedTable,
  verifyParentBlock,
} from "./merge-checksums.js";
import { type MergeState, type MergeStep, readMergeState, writeMergeState } from "./merge-state.js";
import { type MergeStorage, nodeFsMergeStorage } from "./merge-storage.js";
import { VhdError } from "./vhd-error.js";
import type { StoredBlock, VhdFile } from "./vhd-file.js";

export interface MergeVhdOptions {
  /** The older file. It receives the child's blocks in place, takes the child's identity, then replaces the child. */
  parent: string;
  /** The newer, differencing file. After the merge its path holds the merged disk, with the child's uuid. */
  child: string;
  /** The resumable state. @default `${child}.merge.json` */
  statePath?: string;
  /**
   * Where the files are: every path here is one of its paths (and the state file records them as given). Over a remote
   * the merge writes in place through the remote's protocol (see merge-storage.ts).
   * @default this machine's file system (local paths)
   */
  storage?: MergeStorage;
  /**
   * Path of the parent's block checksums. When that file exists, every parent block the merge combines with the
   * child's is verified against it first (VHD_CHECKSUM_MISMATCH before anything is written for that block), and it gives
   * the merged file's entries for the blocks the child does not touch. Deleted when the merge completes.
   */
  parentChecksums?: string;
  /**
   * Path of the child's block checksums. When that file exists, every child block is verified before it is merged.
   * When the merge completes this path holds the merged file's table (uuid the child's) if the parent's table was there
   * to build it from; otherwise the child's table is removed (before the rename) and the merged file has none.
   * Pass the same two paths on a resume; see ../FORMAT.md, "Merge", for the order of the sidecar writes.
   */
  childChecksums?: string;
  /** Checked before each block: an abort stops the merge as a crash would (resumable), rejecting with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Called after each durable step. Any error it throws aborts the merge at that point, exactly as a crash
   * would leave it; calling mergeVhdChain again with the same paths resumes.
   */
  onStep?: (step: MergeStep) => void | Promise<void>;
}

export type { MergeStep } from "./merge-state.js";

export interface MergeResult {
  /** The merged file: the child's path. */
  path: string;
  /** Blocks of the child merged during this call. */
  mergedBlocks: number;
  resumed: boolean;
  /** Whether `childChecksums` now holds the merged file's block checksums (else the merged file has none). */
  checksumsWritten: boolean;
}

const CHECKPOINT_EVERY = 32;

function bitSet(bitmap: Buffer, sector: number): boolean {
  return (bitmap[sector >> 3] & (0x80 >> (sector & 7))) !== 0;
}

/**
 * Merges a differencing child into its parent in place, so that the child's path ends up holding the merged disk
 * with the child's uuid (children of the child stay valid; the newest restore point's file name is stable).
 * Cost is proportional to the child's allocated blocks. A small state file makes it resumable; at every moment a
 * crash can happen, the chain (parent, child, ...) reads the same bytes (see ../FORMAT.md, "Merge"). With block
 * checksums, the blocks read are verified and the merged file gets its own table (see the options).
 * @throws VhdError VHD_PARENT_MISMATCH (child not of this parent), VHD_UNSUPPORTED (fixed parent, child larger than
 *   the parent's BAT, different block sizes), VHD_MERGE_STATE (a state file for other paths), VHD_CHECKSUM_MISMATCH,
 *   VHD_CHECKSUM_FILE, and open errors; the signal's reason
 */
export async function mergeVhdChain(options: MergeVhdOptions): Promise<MergeResult> {
  const statePath = options.statePath ?? `${options.child}.merge.json`;
  const onStep = options.onStep ?? (() => {});
  const storage = options.storage ?? nodeFsMergeStorage;
  const sidecars = mergeSidecars(storage, options);
  options.signal?.throwIfAborted();
  const state = await readMergeState(storage, statePath);
  const resumed = state !== undefined;
  if (state && (state.parent !== options.parent || state.child !== options.child)) {
    throw new VhdError("VHD_MERGE_STATE", `the state file belongs to a merge of ${state.child} into ${state.parent}`, {
      file: statePath,
      structure: "merge state",
    });
  }
  let merged = 0;
  // Past the identity step with the parent gone, the rename was done: only the last steps are left.
  if (!(state && state.step !== "blocks" && !(await storage.exists(options.parent)))) {
    const parent = await openParent(storage, options.parent);
    try {
      if (state && parent.footer.uuid !== state.parentUuid && parent.footer.uuid !== state.childUuid) {
        throw new VhdError(
          "VHD_MERGE_STATE",
          `the parent's uuid ${parent.footer.uuid} is neither ${state.parentUuid} nor ${state.childUuid}`,
          { file: options.parent, structure: "footer" },
        );
      }
      if (state && state.step !== "blocks") await ensureMergedTable(parent, options.child, state, sidecars);
      else merged = await mergeAndTakeIdentity(parent, options, state, statePath, sidecars, onStep);
    } finally {
      await parent.close();
    }
  }
  await finishMerge({ parent: options.parent, child: options.child }, statePath, sidecars, onStep);
  return {
    path: options.child,
    mergedBlocks: merged,
    resumed,
    checksumsWritten: sidecars.child !== undefined && (await storage.exists(sidecars.child)),
  };
}

/** Steps 1 to 4 (plan, footer, blocks, identity), from the start or from the state's checkpoint; returns the blocks merged. */
async function mergeAndTakeIdentity(
  parent: VhdFile,
  options: MergeVhdOptions,
  previous: MergeState | undefined,
  statePath: string,
  sidecars: MergeSidecars,
  onStep: NonNullable<MergeVhdOptions["onStep"]>,
): Promise<number> {
  const { storage } = sidecars;
  const parentTable = await readTableIfPresent(storage, sidecars.parent);
  const child = await openChild(storage, options.child, { checksums: await readTableIfPresent(storage, sidecars.child) });
  try {
    let state: MergeState;
    if (!previous) {
      state = plan(parent, child);
      if (parentTable) checkParentTable(parent, parentTable, state, child);
      // A merged table left by an abandoned merge of this child must never be taken for this one's.
      if (sidecars.merged) await storage.unlink(sidecars.merged);
      await writeMergeState(storage, statePath, state);
      await onStep({ kind: "planned", blocks: childBlocks(child).length, newBlocks: (state.footerAt - state.dataEnd) / stride(parent) });
    } else {
      state = previous;
      if (parentTable) checkParentTable(parent, parentTable, state, child);
    }
    // The footer moves first to where the file will end, so the file stays valid while blocks are appended.
    await parent.writeAt(encodeFooter(parent.footer), state.footerAt);
    await parent.sync();
    await onStep({ kind: "footer-moved" });
    const written = new Map<number, Buffer>();
    const merged = await mergeBlocks(parent, child, state, (next) => writeMergeState(storage, statePath, next), onStep, {
      parentTable,
      resumedFrom: previous ? previous.nextBlock : undefined,
      written,
      packer: new HashPacker(),
      signal: options.signal,
    });
    const table =
      parentTable && sidecars.child ? await mergedTable(parent, parentTable, childBlocks(child), written, child.footer.uuid) : undefined;
    await takeIdentity(parent, child, state);
    if (await saveMergedTable(sidecars, table)) await onStep({ kind: "checksums-written" });
    state.step = "identity";
    await writeMergeState(storage, statePath, state);
    await onStep({ kind: "identity" });
    return merged;
  } finally {
    await child.close();
  }
}

/**
 * Resuming past the identity step with the parent not yet renamed: the merged table must be in place before the rename.
 * It normally is; a state file written before checksums were passed, or a lost table, is rebuilt from the parent's.
 */
async function ensureMergedTable(parent: VhdFile, childPath: string, state: MergeState, sidecars: MergeSidecars): Promise<void> {
  if (!sidecars.child || (await mergedTableIsReady(sidecars, parent, state.childUuid))) return;
  const child = await openChild(sidecars.storage, childPath);
  try {
    await saveMergedTable(sidecars, await rebuildMergedTable(parent, child, sidecars));
  } finally {
    await child.close();
  }
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
  if (parent.diskType === DiskType.Fixed)
    throw new VhdError("VHD_UNSUPPORTED", "cannot merge into a fixed disk", { file: parent.path, structure: "footer" });
  if (child.diskType !== DiskType.Differencing || child.header?.parentUuid !== parent.footer.uuid) {
    throw new VhdError(
      "VHD_PARENT_MISMATCH",
      `${child.path} is not a differencing child of ${parent.path} (uuid ${parent.footer.uuid})`,
      where,
    );
  }
  if (child.blockSize !== parent.blockSize)
    throw new VhdError("VHD_UNSUPPORTED", `block size ${child.blockSize} differs from the parent's ${parent.blockSize}`, where);
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

/** What the block loop checks and records beside merging. */
interface BlockChecks {
  /** The parent's table: each parent block is verified before it is combined. */
  parentTable?: VhdBlockChecksums;
  /** On a resume, the checkpoint this run starts from. */
  resumedFrom?: number;
  /** Filled: the checksum of each block as written. */
  written: Map<number, Buffer>;
  packer: HashPacker;
  signal?: AbortSignal;
}

async function mergeBlocks(
  parent: VhdFile,
  child: VhdFile,
  state: MergeState,
  checkpoint: (state: MergeState) => Promise<void>,
  onStep: NonNullable<MergeVhdOptions["onStep"]>,
  checks: BlockChecks,
): Promise<number> {
  const blocks = childBlocks(child);
  const tableOffset = parent.header?.tableOffset as number;
  // Appended blocks sit contiguously from dataEnd; those already there (a crash after their BAT write) are counted.
  let appended = 0;
  for (let i = 0; i < parent.blockCount; i++) if (parent.hasBlock(i) && parent.bat[i] * SECTOR_SIZE >= state.dataEnd) appended++;
  const differencingParent = parent.diskType === DiskType.Differencing;
  const sectorsPerBlock = parent.blockSize / SECTOR_SIZE;
  let merged = 0;
  for (let i = state.nextBlock; i < blocks.length; i++) {
    checks.signal?.throwIfAborted();
    const index = blocks[i];
    // Read (and, with its table, verified) before anything of this block is written.
    const childBitmap = await child.readBitmap(index);
    const childData = await child.readBlock(index);
    let written: { bitmap: Buffer; data: Buffer };
    if (parent.hasBlock(index)) {
      const stored = (await parent.readStoredBlock(index)) as StoredBlock;
      // On a resume, the interrupted run may have rewritten the blocks after its last checkpoint (fewer than
      // CHECKPOINT_EVERY, from nextBlock on): the parent's table no longer describes those and their new checksum was
      // never kept, so they alone are not verified. Their child sectors still are, against the child's table.
      const maybeRewritten = checks.resumedFrom !== undefined && i < checks.resumedFrom + CHECKPOINT_EVERY;
      if (checks.parentTable && !maybeRewritten) verifyParentBlock(parent, checks.parentTable, index, stored);
      const data = stored.data;
      const bitmap = stored.bitmap as Buffer;
      // Only sectors the child holds change, and the chain reads those from the child: safe at any moment.
      for (let s = 0; s < sectorsPerBlock; s++) {
        if (!bitSet(childBitmap, s)) continue;
        childData.copy(data, s * SECTOR_SIZE, s * SECTOR_SIZE, (s + 1) * SECTOR_SIZE);
        bitmap[s >> 3] |= 0x80 >> (s & 7);
      }
      await parent.writeAt(data, stored.offset + parent.bitmapSize);
      await parent.sync();
      await onStep({ kind: "block-data", index });
      await parent.writeAt(bitmap, stored.offset);
      parent.forgetBitmap(index);
      written = { bitmap, data };
    } else {
      // A new block is written where no BAT entry points, then made visible by one 4-byte BAT write.
      let bitmap = childBitmap;
      if (!differencingParent) {
        for (let s = 0; s < sectorsPerBlock; s++) if (!bitSet(childBitmap, s)) childData.fill(0, s * SECTOR_SIZE, (s + 1) * SECTOR_SIZE);
        bitmap = Buffer.alloc(parent.bitmapSize, 0xff);
      }
      const at = state.dataEnd + appended * stride(parent);
      await parent.writeAt(bitmap, at);
      await parent.writeAt(childData, at + parent.bitmapSize);
      await parent.sync();
      await onStep({ kind: "block-data", index });
      const entry = Buffer.alloc(4);
      entry.writeUInt32BE(at / SECTOR_SIZE);
      await parent.writeAt(entry, tableOffset + index * 4);
      parent.bat[index] = at / SECTOR_SIZE;
      appended++;
      written = { bitmap, data: childData };
    }
    checks.written.set(index, checks.packer.keep(checksumOfBlock(written.bitmap, written.data)));
    merged++;
    if ((i + 1) % CHECKPOINT_EVERY === 0) {
      // The checkpoint says "every block before this one is merged": their last writes (bitmap, BAT entry) must be on
      // the disk before it is.
      await parent.sync();
      state.nextBlock = i + 1;
      await checkpoint(state);
    }
    await onStep({ kind: "block", index, done: i + 1, total: blocks.length });
  }
  state.nextBlock = blocks.length;
  await parent.sync();
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
  await parent.writeAt(footer, state.footerAt);
  await parent.writeAt(footer, 0);
  await parent.sync();
}
