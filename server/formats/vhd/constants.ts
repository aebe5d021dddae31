/** Byte-level constants of the VHD format (big-endian; see ../FORMAT.md and research/xapi-protocol.md §5.2). */

export const SECTOR_SIZE = 512;
export const FOOTER_SIZE = 512;
export const HEADER_SIZE = 1024;
/** The block size Cairn writes (and XAPI uses): 2 MiB. Other power-of-two sizes are read. */
export const VHD_BLOCK_SIZE = 2 * 1024 * 1024;
/** Unallocated BAT entry. */
export const BAT_UNUSED = 0xffffffff;
export const FOOTER_COOKIE = "conectix";
export const HEADER_COOKIE = "cxsparse";
export const FILE_FORMAT_VERSION = 0x00010000;
export const HEADER_VERSION = 0x00010000;
/** Footer features: bit 0x2 "reserved" is always set. */
export const FEATURES_RESERVED = 0x2;
/** The VHD epoch: 2000-01-01T00:00:00Z, in Unix milliseconds. */
export const VHD_EPOCH_MS = Date.UTC(2000, 0, 1);
export const PARENT_LOCATOR_COUNT = 8;
export const PARENT_NAME_BYTES = 512;

export enum DiskType {
  Fixed = 2,
  Dynamic = 3,
  Differencing = 4,
}

export enum PlatformCode {
  None = 0,
  /** Relative path, UTF-16LE per the MS spec ("W2ru"). */
  W2ru = 0x57327275,
  /** Absolute path, UTF-16LE ("W2ku"). */
  W2ku = 0x57326b75,
  /** File URL, UTF-8 ("MacX"). */
  MacX = 0x4d616358,
}

/** Byte length of a block's sector bitmap, rounded up to a sector. */
export function bitmapSizeFor(blockSize: number): number {
  const bytes = Math.ceil(blockSize / SECTOR_SIZE / 8);
  return Math.ceil(bytes / SECTOR_SIZE) * SECTOR_SIZE;
}
