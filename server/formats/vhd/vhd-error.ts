/** The codes a {@link VhdError} carries: one per way a VHD can be wrong. */
export type VhdErrorCode =
  | "VHD_BAD_COOKIE"
  | "VHD_BAD_CHECKSUM"
  | "VHD_TRUNCATED"
  | "VHD_BAD_FIELD"
  | "VHD_BAT_OUT_OF_RANGE"
  | "VHD_BITMAP_MISMATCH"
  | "VHD_PARENT_MISMATCH"
  | "VHD_UNSUPPORTED"
  | "VHD_BAD_INPUT"
  | "VHD_MERGE_STATE"
  /** A block checksum file (sidecar) that is cut, damaged or of an unknown version: see ../FORMAT.md, "Block checksums". */
  | "VHD_CHECKSUM_FILE"
  /** A VHD that differs from its block checksums: a damaged block, a BAT entry moved or dropped, another file's table. */
  | "VHD_CHECKSUM_MISMATCH";

/**
 * Every failure to read or write a VHD. The message names the file (when known), the structure
 * (footer, header, BAT, block 12, ...) and the byte offset, so that nothing is read as garbage silently.
 */
export class VhdError extends Error {
  readonly code: VhdErrorCode;
  readonly file?: string;
  readonly structure: string;
  readonly offset?: number;

  constructor(code: VhdErrorCode, detail: string, where: { file?: string; structure: string; offset?: number }) {
    const place = [where.file, where.structure, where.offset === undefined ? undefined : `at offset ${where.offset}`]
      .filter((part) => part !== undefined)
      .join(", ");
    super(`${code}: ${detail} (${place})`);
    this.name = "VhdError";
    this.code = code;
    this.file = where.file;
    this.structure = where.structure;
    this.offset = where.offset;
  }
}
