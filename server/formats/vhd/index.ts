export { VHD_BLOCK_SIZE, DiskType, PlatformCode, SECTOR_SIZE, FOOTER_SIZE, HEADER_SIZE, BAT_UNUSED, bitmapSizeFor } from "./constants.js";
export { VhdError, type VhdErrorCode } from "./vhd-error.js";
export { type VhdFooter, encodeFooter, decodeFooter } from "./footer.js";
export { type VhdHeader, type ParentLocator, encodeHeader, decodeHeader } from "./header.js";
export { geometryForSize, type ChsGeometry } from "./geometry.js";
export { type VhdBlock, type VhdWriteOptions, createVhdStream, vhdStreamSize } from "./vhd-stream-writer.js";
export { type VhdStreamItem, parseVhdStream } from "./vhd-stream-parser.js";
export { VhdFile, type VhdByteSource, type VhdOpenOptions, type StoredBlock } from "./vhd-file.js";
export type { FooterDamage } from "./vhd-footers.js";
export { repairVhdFooter } from "./footer-repair.js";
export { VhdChain } from "./vhd-chain.js";
export {
  type VhdBlockChecksums,
  checksumOfBlock,
  encodeBlockChecksums,
  decodeBlockChecksums,
  checksumVhdStream,
} from "./block-checksums.js";
export { type VhdVerifyResult, type VhdScanOptions, verifyVhdFile, checksumVhdFile } from "./vhd-file-checksums.js";
export { type MergeVhdOptions, type MergeStep, type MergeResult, mergeVhdChain } from "./merge.js";
export { finishMergeWithoutState } from "./merge-finish.js";
export { type MergeStorage, type MergeFile, type MergeSource, nodeFsMergeStorage } from "./merge-storage.js";
export { type VhdIdentity, rewriteVhdIdentity } from "./vhd-identity-transform.js";
export { measureVhdStream, type VhdStreamSize } from "./vhd-stream-size.js";
