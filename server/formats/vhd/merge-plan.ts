/**
 * The merge of a differencing child into its parent as a new file rather than in place: for stores whose files cannot be
 * changed, only replaced (S3). The merged file is described as an ordered list of segments, each either a byte range of
 * the parent file as it is, or new bytes made on demand (block by block: memory stays flat). A store that can assemble
 * a file from ranges of another (S3's UploadPartCopy) then writes it at a cost proportional to the child, not the disk.
 *
 * The result is byte for byte the file the in-place merge (merge.ts) leaves at the child's path: the parent's layout,
 * each block the child holds combined into the parent's block where it has one (bitmap OR-ed, the child's sectors
 * copied over), the child's other blocks appended after the parent's data in index order, the BAT entries of those set,
 * and both footers the parent's with the child's identity (uuid, time, size, geometry, creator).
 * See ../FORMAT.md, "Merge" (and ../../repository/FORMAT.md, "Merge on S3").
 */
import { HashPacker, type VhdBlockChecksums, checksumOfBlock } from "./block-checksums.js";
import { checkChecksumsDescribe } from "./checksum-match.js";
import { DiskType, FOOTER_SIZE, SECTOR_SIZE } from "./constants.js";
import { encodeFooter } from "./footer.js";
import { VhdError } from "./vhd-error.js";
import type { StoredBlock, VhdFile } from "./vhd-file.js";

/** One piece of the merged file, in file order. */
export type MergeSegment =
  /** Bytes `start` (inclusive) to `end` (exclusive) of the parent file, unchanged. */
  | { kind: "parent"; start: number; end: number }
  /** `length` new bytes; `bytes()` makes them (reading, and verifying, what they are made of). Call it once. */
  | { kind: "new"; length: number; bytes: () => Promise<Buffer>; block?: number };

export interface ComposedMergePlan {
  /** Size of the merged file. */
  size: number;
  segments: readonly MergeSegment[];
  /** The child's allocated blocks, ascending: each is one "new" segment. */
  childBlocks: readonly number[];
  /** Of those, the blocks the parent did not have (appended after its data). */
  newBlocks: number;
  parentUuid: string;
  childUuid: string;
  /** The checksum of each child block of the merged file, by BAT index, filled as its segment's bytes are made. */
  written: ReadonlyMap<number, Buffer>;
}

export interface ComposedMergeOptions {
  /** The parent's block checksums: checked to describe the parent, and each parent block combined is verified first. */
  parentTable?: VhdBlockChecksums;
  /**
   * The merged file's table made by an earlier, interrupted attempt of this merge: each block made must hash to its entry
   * (the child's table may be gone by then; this still proves the bytes are those the first attempt verified).
   */
  expected?: VhdBlockChecksums;
  /** Called after each child block is made (for progress); what it throws stops the caller where it stands. */
  onBlock?: (progress: { index: number; done: number; total: number }) => void | Promise<void>;
}

function bitSet(bitmap: Buffer, sector: number): boolean {
  return (bitmap[sector >> 3] & (0x80 >> (sector & 7))) !== 0;
}

/**
 * Plans the merge of `child` into `parent` as a new file (see the file's comment). Reads nothing but what the two opened
 * files already hold; the child's blocks are read (verified when `child` was opened with its checksums) only as the
 * segments' bytes are made.
 * @throws VhdError VHD_PARENT_MISMATCH, VHD_UNSUPPORTED (as mergeVhdChain), VHD_CHECKSUM_MISMATCH (a parent table that
 *   does not describe the parent); from the bytes: VHD_CHECKSUM_MISMATCH for a child or parent block that does not
 *   match its table, or a made block that does not match `expected`
 */
export function planComposedMerge(parent: VhdFile, child: VhdFile, options: ComposedMergeOptions = {}): ComposedMergePlan {
  const where = { file: child.path, structure: "header" };
  if (parent.diskType === DiskType.Fixed || !parent.header) {
    throw new VhdError("VHD_UNSUPPORTED", "cannot merge into a fixed disk", { file: parent.path, structure: "footer" });
  }
  if (child.diskType !== DiskType.Differencing || child.header?.parentUuid !== parent.footer.uuid) {
    throw new VhdError(
      "VHD_PARENT_MISMATCH",
      `${child.path} is not a differencing child of ${parent.path} (uuid ${parent.footer.uuid})`,
      where,
    );
  }
  if (child.blockSize !== parent.blockSize) {
    throw new VhdError("VHD_UNSUPPORTED", `block size ${child.blockSize} differs from the parent's ${parent.blockSize}`, where);
  }
  const childBlocks: number[] = [];
  for (let index = 0; index < child.blockCount; index++) if (child.hasBlock(index)) childBlocks.push(index);
  if (childBlocks.some((index) => index >= parent.blockCount)) {
    throw new VhdError("VHD_UNSUPPORTED", `the child has blocks past the parent's ${parent.blockCount}-entry BAT (a grown disk)`, where);
  }
  if (options.parentTable) checkChecksumsDescribe(parent, options.parentTable, { uuid: parent.footer.uuid });

  const stride = parent.bitmapSize + parent.blockSize;
  const dataEnd = parent.size - FOOTER_SIZE;
  const tableOffset = parent.header.tableOffset;
  const batEnd = tableOffset + parent.blockCount * 4;
  const appended = childBlocks.filter((index) => !parent.hasBlock(index));
  /** Where each appended block goes: contiguously from the parent's old footer, in index order. */
  const newAt = new Map(appended.map((index, k) => [index, dataEnd + k * stride]));
  const footer = encodeFooter({
    ...parent.footer,
    uuid: child.footer.uuid,
    timestamp: child.footer.timestamp,
    currentSize: child.footer.currentSize,
    originalSize: child.footer.originalSize,
    geometry: child.footer.geometry,
    creatorApplication: child.footer.creatorApplication,
  });

  const written = new Map<number, Buffer>();
  const packer = new HashPacker();
  const total = childBlocks.length;
  let done = 0;
  const differencingParent = parent.diskType === DiskType.Differencing;
  const sectorsPerBlock = parent.blockSize / SECTOR_SIZE;

  const makeBlock = async (index: number): Promise<Buffer> => {
    const childBitmap = await child.readBitmap(index);
    const childData = await child.readBlock(index);
    const out = Buffer.allocUnsafe(stride);
    const bitmap = out.subarray(0, parent.bitmapSize);
    const data = out.subarray(parent.bitmapSize);
    if (parent.hasBlock(index)) {
      const stored = (await parent.readStoredBlock(index)) as StoredBlock;
      const expected = options.parentTable?.entries[index];
      if (options.parentTable && (!expected || !checksumOfBlock(stored.bitmap, stored.data).equals(expected))) {
        throw parent.checksumMismatch(index, stored);
      }
      (stored.bitmap as Buffer).copy(bitmap);
      stored.data.copy(data);
      for (let s = 0; s < sectorsPerBlock; s++) {
        if (!bitSet(childBitmap, s)) continue;
        childData.copy(data, s * SECTOR_SIZE, s * SECTOR_SIZE, (s + 1) * SECTOR_SIZE);
        bitmap[s >> 3] |= 0x80 >> (s & 7);
      }
    } else if (differencingParent) {
      childBitmap.copy(bitmap);
      childData.copy(data);
    } else {
      // A dynamic disk holds every sector of an allocated block: those the child does not hold read as zeros.
      bitmap.fill(0xff);
      childData.copy(data);
      for (let s = 0; s < sectorsPerBlock; s++) if (!bitSet(childBitmap, s)) data.fill(0, s * SECTOR_SIZE, (s + 1) * SECTOR_SIZE);
    }
    const sum = checksumOfBlock(bitmap, data);
    const earlier = options.expected?.entries[index];
    if (options.expected && (!earlier || !earlier.equals(sum))) {
      throw new VhdError(
        "VHD_CHECKSUM_MISMATCH",
        `block ${index} merged now differs from the same block merged by the interrupted attempt: the parent or the child changed, or one is damaged; run a verify`,
        { file: child.path, structure: `block ${index}` },
      );
    }
    written.set(index, packer.keep(sum));
    done++;
    await options.onBlock?.({ index, done, total });
    return out;
  };

  // The changes inside the parent's extent, by offset: the footer copy, BAT sectors, combined blocks.
  const patches: Array<{ at: number; length: number; bytes: () => Promise<Buffer>; block?: number }> = [
    { at: 0, length: FOOTER_SIZE, bytes: async () => footer },
  ];
  const batSectors = new Set<number>();
  for (const index of appended) batSectors.add(Math.floor((index * 4) / SECTOR_SIZE));
  for (const sector of [...batSectors].sort((a, b) => a - b)) {
    const start = tableOffset + sector * SECTOR_SIZE;
    const end = Math.min(start + SECTOR_SIZE, batEnd);
    patches.push({
      at: start,
      length: end - start,
      bytes: async () => {
        const bytes = Buffer.alloc(end - start);
        for (let k = 0; k < bytes.length / 4; k++) {
          const index = sector * (SECTOR_SIZE / 4) + k;
          const at = newAt.get(index);
          bytes.writeUInt32BE(at === undefined ? parent.bat[index] : at / SECTOR_SIZE, k * 4);
        }
        return bytes;
      },
    });
  }
  for (const index of childBlocks) {
    const at = parent.blockOffset(index);
    if (at !== undefined) patches.push({ at, length: stride, bytes: () => makeBlock(index), block: index });
  }
  patches.sort((a, b) => a.at - b.at);

  const segments: MergeSegment[] = [];
  let position = 0;
  for (const patch of patches) {
    if (patch.at < position) throw new Error(`merge plan: overlapping changes at ${patch.at} (a bug)`);
    if (patch.at > position) segments.push({ kind: "parent", start: position, end: patch.at });
    segments.push({ kind: "new", length: patch.length, bytes: patch.bytes, block: patch.block });
    position = patch.at + patch.length;
  }
  if (position < dataEnd) segments.push({ kind: "parent", start: position, end: dataEnd });
  for (const index of appended) segments.push({ kind: "new", length: stride, bytes: () => makeBlock(index), block: index });
  segments.push({ kind: "new", length: FOOTER_SIZE, bytes: async () => footer });

  return {
    size: dataEnd + appended.length * stride + FOOTER_SIZE,
    segments,
    childBlocks,
    newBlocks: appended.length,
    parentUuid: parent.footer.uuid,
    childUuid: child.footer.uuid,
    written,
  };
}

/**
 * The merged file's block checksums, once every segment's bytes were made: the parent's entries for the blocks the
 * child does not touch (their bytes are copied unchanged), the hash of each block made for the child's.
 * @throws Error when a child block was not made (a bug of the caller)
 */
export function composedMergeTable(plan: ComposedMergePlan, parentTable: VhdBlockChecksums): VhdBlockChecksums {
  const entries = parentTable.entries.slice();
  for (const index of plan.childBlocks) {
    const sum = plan.written.get(index);
    if (!sum) throw new Error(`merge plan: block ${index} was never made, so its checksum is unknown (a bug)`);
    entries[index] = sum;
  }
  return { vhdUuid: plan.childUuid, blockSize: parentTable.blockSize, entries };
}
