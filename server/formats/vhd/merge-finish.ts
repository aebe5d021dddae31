/**
 * The end of a merge, once the parent holds every block and the child's identity: the renames and deletes, in the order
 * that lets a crash anywhere be finished by running them again (see ../FORMAT.md, "Merge"). Also the way out for a merge
 * whose state file was lost after its identity step.
 */
import type { VhdBlockChecksums } from "./block-checksums.js";
import { DiskType, FOOTER_SIZE, SECTOR_SIZE } from "./constants.js";
import { type MergeSidecars, mergeSidecars, readTableIfPresent, rebuildMergedTable, saveMergedTable } from "./merge-checksums.js";
import { type MergeStep, readMergeState, writeMergeState } from "./merge-state.js";
import { type MergeStorage, nodeFsMergeStorage } from "./merge-storage.js";
import { VhdError } from "./vhd-error.js";
import { type StoredBlock, VhdFile } from "./vhd-file.js";
import { readAt } from "./vhd-footers.js";

/** The parent, opened to be changed in place through the storage. */
export async function openParent(storage: MergeStorage, path: string): Promise<VhdFile> {
  return VhdFile.openForUpdate(path, await storage.openForUpdate(path));
}

/** The child, opened read-only through the storage (verified against `checksums` when given). */
export async function openChild(storage: MergeStorage, path: string, options: { checksums?: VhdBlockChecksums } = {}): Promise<VhdFile> {
  return VhdFile.openSource(path, await storage.openForRead(path), options);
}

/**
 * Steps 5 to 8, each skipped when already done: parent renamed over the child; merged table renamed over the child's;
 * parent's table deleted; state file deleted. Every one is durable (directory fsync'd) before the next.
 */
export async function finishMerge(
  paths: { parent: string; child: string },
  statePath: string,
  sidecars: MergeSidecars,
  onStep: (step: MergeStep) => void | Promise<void>,
): Promise<void> {
  const { storage } = sidecars;
  if (await storage.exists(paths.parent)) {
    await storage.rename(paths.parent, paths.child);
    await onStep({ kind: "renamed" });
  }
  if (sidecars.merged && sidecars.child && (await storage.exists(sidecars.merged))) {
    await storage.rename(sidecars.merged, sidecars.child);
    await onStep({ kind: "checksums-renamed" });
  }
  if (sidecars.parent) await storage.unlink(sidecars.parent);
  await storage.unlink(statePath);
}

function bitSet(bitmap: Buffer, sector: number): boolean {
  return (bitmap[sector >> 3] & (0x80 >> (sector & 7))) !== 0;
}

/**
 * Whether `parent` is the merge of `child` into the file it was: it carries the child's uuid and size, is not itself on
 * top of the child, and holds every sector the child holds, byte for byte (every child block is read, verified when the
 * child has its table).
 */
async function holdsMergedChild(parent: VhdFile, child: VhdFile): Promise<boolean> {
  if (parent.footer.uuid !== child.footer.uuid) return false;
  if (child.diskType !== DiskType.Differencing || !child.header || child.header.parentUuid === child.footer.uuid) return false;
  if (parent.diskType === DiskType.Fixed) return false;
  if (parent.diskType === DiskType.Differencing && parent.header?.parentUuid === child.footer.uuid) return false;
  if (parent.virtualSize !== child.virtualSize || parent.blockSize !== child.blockSize) return false;
  const sectorsPerBlock = child.blockSize / SECTOR_SIZE;
  for (let index = 0; index < child.blockCount; index++) {
    if (!child.hasBlock(index)) continue;
    if (!parent.hasBlock(index)) return false;
    const childBitmap = await child.readBitmap(index);
    const childData = await child.readBlock(index);
    const stored = (await parent.readStoredBlock(index)) as StoredBlock;
    for (let s = 0; s < sectorsPerBlock; s++) {
      if (!bitSet(childBitmap, s)) continue;
      if (parent.diskType === DiskType.Differencing && !bitSet(stored.bitmap as Buffer, s)) return false;
      const from = s * SECTOR_SIZE;
      if (!childData.subarray(from, from + SECTOR_SIZE).equals(stored.data.subarray(from, from + SECTOR_SIZE))) return false;
    }
  }
  return true;
}

/** Ends a possibly torn identity step: both footers become the one that carries the child's identity. */
async function alignFooters(parent: VhdFile): Promise<void> {
  const footerAt = parent.size - FOOTER_SIZE;
  const [copy, trailing] = await Promise.all([readAt(parent.io, 0, FOOTER_SIZE), readAt(parent.io, footerAt, FOOTER_SIZE)]);
  const good = parent.footerDamaged === "trailing" ? copy : trailing;
  let wrote = false;
  if (!copy.equals(good)) {
    await parent.writeAt(good, 0);
    wrote = true;
  }
  if (!trailing.equals(good)) {
    await parent.writeAt(good, footerAt);
    wrote = true;
  }
  if (wrote) await parent.sync();
}

/**
 * Finishes a merge whose state file is gone although its identity step was done: `parent` (the older file) already
 * carries `child`'s uuid, so every block was merged and only the renames are left. Checks that this really holds (see
 * holdsMergedChild), rebuilds the merged file's block checksums from the parent's table (the child's blocks hashed from
 * the parent as it is), then records a state file at the identity step and does what mergeVhdChain does from there:
 * a crash from then on is resumed by mergeVhdChain with the same paths.
 * @returns "not-merged", having changed nothing, when the parent is missing or is not the merged child
 * @throws VhdError VHD_MERGE_STATE when a state file exists (resume with mergeVhdChain), VHD_CHECKSUM_MISMATCH (a child
 *   block, or the parent's table, that does not match), and open errors
 */
export async function finishMergeWithoutState(options: {
  parent: string;
  child: string;
  parentChecksums?: string;
  childChecksums?: string;
  /** @default `${child}.merge.json` */
  statePath?: string;
  /** Where the files are (all the paths above are its paths). @default this machine's file system */
  storage?: MergeStorage;
}): Promise<"finished" | "not-merged"> {
  const statePath = options.statePath ?? `${options.child}.merge.json`;
  const storage = options.storage ?? nodeFsMergeStorage;
  if (await readMergeState(storage, statePath)) {
    throw new VhdError("VHD_MERGE_STATE", "a state file exists: this merge is resumed by mergeVhdChain", {
      file: statePath,
      structure: "merge state",
    });
  }
  if (!(await storage.exists(options.parent))) return "not-merged";
  const sidecars = mergeSidecars(storage, options);
  const parent = await openParent(storage, options.parent);
  try {
    const child = await openChild(storage, options.child, { checksums: await readTableIfPresent(storage, sidecars.child) });
    try {
      if (!(await holdsMergedChild(parent, child))) return "not-merged";
      const table = await rebuildMergedTable(parent, child, sidecars);
      await alignFooters(parent);
      await saveMergedTable(sidecars, table);
      const end = parent.size - FOOTER_SIZE;
      let blocks = 0;
      for (let index = 0; index < child.blockCount; index++) if (child.hasBlock(index)) blocks++;
      await writeMergeState(storage, statePath, {
        version: 1,
        parent: options.parent,
        child: options.child,
        parentUuid: child.header?.parentUuid as string,
        childUuid: child.footer.uuid,
        dataEnd: end,
        footerAt: end,
        nextBlock: blocks,
        step: "identity",
      });
    } finally {
      await child.close();
    }
  } finally {
    await parent.close();
  }
  await finishMerge(options, statePath, sidecars, () => {});
  return "finished";
}
