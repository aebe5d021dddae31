/**
 * The block checksums side of a merge: reading the two tables, checking the parent's against the parent as the merge
 * finds it, building the merged file's table and putting it in place (see ../FORMAT.md, "Merge").
 */
import { HashPacker, type VhdBlockChecksums, checksumOfBlock, decodeBlockChecksums, encodeBlockChecksums } from "./block-checksums.js";
import { checkChecksumsDescribe } from "./checksum-match.js";
import { SECTOR_SIZE } from "./constants.js";
import type { MergeState } from "./merge-state.js";
import type { MergeStorage } from "./merge-storage.js";
import type { StoredBlock, VhdFile } from "./vhd-file.js";

/** The sidecars a merge deals with (paths of the merge's storage), and that storage. */
export interface MergeSidecars {
  storage: MergeStorage;
  /** The parent's table: verifies the parent's blocks and gives the entries of the blocks the child does not touch. */
  parent?: string;
  /** The child's table: verifies the child's blocks; when the merge completes, the merged file's table is here. */
  child?: string;
  /**
   * `<child>.merging`: the merged file's table, written (durably) before the identity step is recorded and renamed over
   * `child` after the parent is renamed over the child. Exists only while the merge's state file does.
   */
  merged?: string;
}

export function mergeSidecars(storage: MergeStorage, options: { parentChecksums?: string; childChecksums?: string }): MergeSidecars {
  return {
    storage,
    parent: options.parentChecksums,
    child: options.childChecksums,
    merged: options.childChecksums && `${options.childChecksums}.merging`,
  };
}

/** The table in a sidecar, or undefined when there is no such file. @throws VhdError VHD_CHECKSUM_FILE */
export async function readTableIfPresent(storage: MergeStorage, path: string | undefined): Promise<VhdBlockChecksums | undefined> {
  if (path === undefined) return undefined;
  const bytes = await storage.readFile(path);
  if (bytes === undefined) return undefined;
  return decodeBlockChecksums(bytes, { file: path });
}

/**
 * Checks that `table` describes the parent as it was when the merge was planned: its uuid then, and the same allocated
 * blocks, except blocks an interrupted run of this merge appended (child blocks, past the parent's old end).
 * @throws VhdError VHD_CHECKSUM_MISMATCH
 */
export function checkParentTable(parent: VhdFile, table: VhdBlockChecksums, state: MergeState, child: VhdFile): void {
  checkChecksumsDescribe(parent, table, {
    uuid: state.parentUuid,
    extraBlock: (index) => child.hasBlock(index) && parent.bat[index] * SECTOR_SIZE >= state.dataEnd,
  });
}

/** @throws VhdError VHD_CHECKSUM_MISMATCH when a parent block about to be combined differs from its checksum */
export function verifyParentBlock(parent: VhdFile, table: VhdBlockChecksums, index: number, block: StoredBlock): void {
  const expected = table.entries[index];
  if (!expected || !checksumOfBlock(block.bitmap, block.data).equals(expected)) throw parent.checksumMismatch(index, block);
}

/**
 * The merged file's table: the parent's entries for the blocks the child did not touch (their bytes did not change), and
 * for the child's blocks the hash of the bytes written (`written`) or, for a block merged by an earlier, interrupted
 * run, of the bytes read back from the parent now. Checked against the parent's BAT before it is returned.
 */
export async function mergedTable(
  parent: VhdFile,
  parentTable: VhdBlockChecksums,
  childBlocks: readonly number[],
  written: ReadonlyMap<number, Buffer>,
  childUuid: string,
): Promise<VhdBlockChecksums> {
  const entries = parentTable.entries.slice();
  const packer = new HashPacker();
  for (const index of childBlocks) {
    let sum = written.get(index);
    if (!sum) {
      const block = (await parent.readStoredBlock(index)) as StoredBlock;
      sum = packer.keep(checksumOfBlock(block.bitmap, block.data));
    }
    entries[index] = sum;
  }
  const table = { vhdUuid: childUuid, blockSize: parent.blockSize, entries };
  checkChecksumsDescribe(parent, table, { uuid: childUuid });
  return table;
}

/**
 * The last sidecar step before the identity step is recorded: the merged table goes to `sidecars.merged`; or, with no
 * parent table to build it from, the child's sidecar is removed now, while the child is still the child, so that no
 * crash leaves it beside the merged file it does not describe.
 * @returns whether a merged table was written
 */
export async function saveMergedTable(sidecars: MergeSidecars, table: VhdBlockChecksums | undefined): Promise<boolean> {
  if (!sidecars.child || !sidecars.merged) return false;
  if (!table) {
    await sidecars.storage.unlink(sidecars.child);
    return false;
  }
  await sidecars.storage.writeFileDurably(sidecars.merged, encodeBlockChecksums(table));
  return true;
}

/** Whether `sidecars.merged` holds a readable table of the merged parent (uuid `childUuid`, its exact BAT). */
export async function mergedTableIsReady(sidecars: MergeSidecars, parent: VhdFile, childUuid: string): Promise<boolean> {
  try {
    const table = await readTableIfPresent(sidecars.storage, sidecars.merged);
    if (!table) return false;
    checkChecksumsDescribe(parent, table, { uuid: childUuid });
    return true;
  } catch {
    // Unreadable, or not the table of this merge: either way it is not ready, which is what false says.
    return false;
  }
}

/**
 * For a merge whose blocks are all merged but whose merged table is not at hand (its state file was lost, or it was not
 * written): the parent's table, checked against the merged parent, with the child's blocks hashed from the parent as
 * it is now. Undefined without a parent table.
 * @throws VhdError VHD_CHECKSUM_MISMATCH when the parent's table does not describe the parent
 */
export async function rebuildMergedTable(parent: VhdFile, child: VhdFile, sidecars: MergeSidecars): Promise<VhdBlockChecksums | undefined> {
  const parentTable = await readTableIfPresent(sidecars.storage, sidecars.parent);
  if (!parentTable || !sidecars.child) return undefined;
  const childBlocks: number[] = [];
  for (let index = 0; index < child.blockCount; index++) if (child.hasBlock(index)) childBlocks.push(index);
  checkChecksumsDescribe(parent, parentTable, { uuid: child.header?.parentUuid, extraBlock: (index) => child.hasBlock(index) });
  return mergedTable(parent, parentTable, childBlocks, new Map(), child.footer.uuid);
}
