import type { VhdBlockChecksums } from "./block-checksums.js";
import { VhdError } from "./vhd-error.js";

/** What the check reads of a VHD file (a VhdFile, named by shape so that vhd-file.ts can call this without a circle). */
interface CheckedFile {
  readonly path: string;
  readonly footer: VhdFooter;
  readonly header: VhdHeader | undefined;
  readonly blockSize: number;
  readonly blockCount: number;
  hasBlock(index: number): boolean;
}
import type { VhdFooter } from "./footer.js";
import type { VhdHeader } from "./header.js";

export const DAMAGED_ADVICE = "the file is damaged; restore another restore point or run a verify";

/**
 * Checks that `table` describes `file` as a whole: the uuid, the block size, one entry per BAT entry, and a checksum for
 * exactly the allocated BAT entries (a BAT entry flipped to unused, or a block a stale table does not know, is caught here;
 * one pointing elsewhere is caught when its block is read).
 * @param options.uuid the uuid the table must carry. @default the file's footer uuid
 * @param options.extraBlock whether an allocated block the table does not list is expected (a merge's appended blocks)
 * @throws VhdError VHD_CHECKSUM_MISMATCH naming the file and the BAT entry
 */
export function checkChecksumsDescribe(
  file: CheckedFile,
  table: VhdBlockChecksums,
  options: { uuid?: string; extraBlock?: (index: number) => boolean } = {},
): void {
  const fail = (detail: string, structure: string, offset?: number): never => {
    throw new VhdError("VHD_CHECKSUM_MISMATCH", detail, { file: file.path, structure, offset });
  };
  const mismatch =
    "the file or its block checksums are damaged, or they do not belong together; restore another restore point or run a verify";
  const uuid = options.uuid ?? file.footer.uuid;
  if (table.vhdUuid !== uuid) fail(`the block checksums describe VHD ${table.vhdUuid}, not this one (${uuid}): ${mismatch}`, "footer");
  if (table.blockSize !== file.blockSize)
    fail(`the block checksums are of ${table.blockSize}-byte blocks, the file's are ${file.blockSize} bytes: ${mismatch}`, "header");
  if (table.entries.length !== file.blockCount)
    fail(`the block checksums have ${table.entries.length} entries, the file's BAT ${file.blockCount}: ${mismatch}`, "BAT");
  const tableOffset = file.header?.tableOffset;
  for (let index = 0; index < file.blockCount; index++) {
    const listed = table.entries[index] !== undefined;
    const allocated = file.hasBlock(index);
    if (listed === allocated) continue;
    const offset = tableOffset === undefined ? undefined : tableOffset + index * 4;
    if (listed)
      fail(`BAT entry ${index} is unused, but the block checksums list block ${index}: ${DAMAGED_ADVICE}`, `BAT entry ${index}`, offset);
    if (!options.extraBlock?.(index))
      fail(`BAT entry ${index} points to a block the block checksums do not list: ${DAMAGED_ADVICE}`, `BAT entry ${index}`, offset);
  }
}
