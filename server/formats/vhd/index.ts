export { VHD_BLOCK_SIZE, DiskType, PlatformCode, SECTOR_SIZE, FOOTER_SIZE, HEADER_SIZE, BAT_UNUSED, bitmapSizeFor } from "./constants.js";
export { VhdError, type VhdErrorCode } from "./vhd-error.js";
export { type VhdFooter, encodeFooter, decodeFooter } from "./footer.js";
export { type VhdHeader, type ParentLocator, encodeHeader, decodeHeader } from "./header.js";
export { geometryForSize, type ChsGeometry } from "./geometry.js";
export { type VhdBlock, type VhdWriteOptions, createVhdStream, vhdStreamSize } from "./vhd-stream-writer.js";
export { type VhdStreamItem, parseVhdStream } from "./vhd-stream-parser.js";
export { VhdFile } from "./vhd-file.js";
export { VhdChain } from "./vhd-chain.js";
