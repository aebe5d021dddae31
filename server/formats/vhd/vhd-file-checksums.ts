import { HashPacker, type VhdBlockChecksums, checksumOfBlock } from "./block-checksums.js";
import { VhdError } from "./vhd-error.js";
import type { VhdFile } from "./vhd-file.js";

/** What {@link verifyVhdFile} found. */
export interface VhdVerifyResult {
  /** Allocated blocks read. */
  blocks: number;
  /** Every block that does not match its checksum (or could not be read whole), in file order. */
  damaged: Array<{ block: number; offset: number; reason: string }>;
}

export interface VhdScanOptions {
  /** Checked before each block: an abort rejects with the signal's reason. */
  signal?: AbortSignal;
  /** After each block: blocks done, blocks in all. */
  onProgress?: (done: number, total: number) => void;
}

/** The allocated blocks of a file in the order they lie in it, so that a whole-file pass reads forward. */
function blocksInFileOrder(file: VhdFile): number[] {
  const blocks: number[] = [];
  for (let index = 0; index < file.blockCount; index++) if (file.hasBlock(index)) blocks.push(index);
  return blocks.sort((a, b) => (file.blockOffset(a) as number) - (file.blockOffset(b) as number));
}

/**
 * Reads every allocated block of a file opened with block checksums once, and lists every block that differs from its
 * checksum (it does not stop at the first). Whether the BAT matches the checksums was checked when the file was opened.
 * @throws VhdError VHD_BAD_INPUT when the file was opened without checksums; the signal's reason; read errors other
 *   than a block the file ends inside (I/O, a remote's failures), which say nothing about the file's bytes
 */
export async function verifyVhdFile(file: VhdFile, options: VhdScanOptions = {}): Promise<VhdVerifyResult> {
  const table = file.checksums;
  if (!table)
    throw new VhdError("VHD_BAD_INPUT", "the file was opened without block checksums: there is nothing to verify it against", {
      file: file.path,
      structure: "block checksums",
    });
  const blocks = blocksInFileOrder(file);
  const damaged: VhdVerifyResult["damaged"] = [];
  for (const [done, index] of blocks.entries()) {
    options.signal?.throwIfAborted();
    const offset = file.blockOffset(index) as number;
    try {
      const block = await file.readStoredBlock(index);
      const expected = table.entries[index];
      if (!block || !expected || !checksumOfBlock(block.bitmap, block.data).equals(expected)) {
        damaged.push({ block: index, offset, reason: file.checksumMismatch(index, block ?? { offset, length: 0 }).message });
      }
    } catch (error) {
      if (!(error instanceof VhdError && error.code === "VHD_TRUNCATED")) throw error;
      damaged.push({ block: index, offset, reason: error.message });
    }
    options.onProgress?.(done + 1, blocks.length);
  }
  return { blocks: blocks.length, damaged };
}

/**
 * The block checksums of a file as it is now (for a VHD written before checksums were kept, or a test). Nothing is
 * verified: the result describes whatever the file holds.
 */
export async function checksumVhdFile(file: VhdFile, options: VhdScanOptions = {}): Promise<VhdBlockChecksums> {
  const entries: Array<Buffer | undefined> = new Array(file.blockCount).fill(undefined);
  const packer = new HashPacker();
  const blocks = blocksInFileOrder(file);
  for (const [done, index] of blocks.entries()) {
    options.signal?.throwIfAborted();
    const block = await file.readStoredBlock(index);
    if (block) entries[index] = packer.keep(checksumOfBlock(block.bitmap, block.data));
    options.onProgress?.(done + 1, blocks.length);
  }
  return { vhdUuid: file.footer.uuid, blockSize: file.blockSize, entries };
}
