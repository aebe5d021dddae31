export type { OvaDocument, OvaObject } from "./ova-document.js";
export { buildOvaXml, toXmlRpcValue } from "./ova-xml-build.js";
export { parseOvaXml } from "./ova-xml-parse.js";
export { XVA_CHUNK_SIZE, type XvaDiskSource, type XvaWriteOptions, createXvaStream } from "./xva-writer.js";
export { type XvaItem, readXva } from "./xva-reader.js";
export { XvaError, type XvaErrorCode } from "./xva-error.js";
export { xxh64Hex } from "./xxhash.js";
export { type VhdChainDisk, type XvaFromVhdChainsOptions, createXvaFromVhdChains } from "./xva-from-vhd-chains.js";
