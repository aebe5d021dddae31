import { vhdChecksum } from "./checksum.js";
import { DiskType, FEATURES_RESERVED, FILE_FORMAT_VERSION, FOOTER_COOKIE, FOOTER_SIZE, VHD_EPOCH_MS } from "./constants.js";
import { type ChsGeometry, geometryForSize } from "./geometry.js";
import { uuidFromBytes, uuidToBytes } from "./uuid.js";
import { VhdError } from "./vhd-error.js";

/** The 512-byte hard-disk footer, decoded. */
export interface VhdFooter {
  features: number;
  fileFormatVersion: number;
  /** Absolute offset of the dynamic header (512 for dynamic/differencing), or null for a fixed disk (all ones on disk). */
  dataOffset: number | null;
  timestamp: Date;
  creatorApplication: string;
  creatorVersion: number;
  creatorHostOs: number;
  originalSize: number;
  currentSize: number;
  geometry: ChsGeometry;
  diskType: DiskType;
  checksum: number;
  uuid: string;
  savedState: boolean;
}

/** Where a structure was read from, for error messages. */
export interface Where {
  file?: string;
  offset?: number;
}

const ALL_ONES = 0xffffffffffffffffn;

/** Seconds since the VHD epoch (2000-01-01), as stored in footers and headers. */
export function toVhdTimestamp(date: Date): number {
  return Math.max(0, Math.floor((date.getTime() - VHD_EPOCH_MS) / 1000)) >>> 0;
}

export function fromVhdTimestamp(seconds: number): Date {
  return new Date(VHD_EPOCH_MS + seconds * 1000);
}

/** Reads a 64-bit big-endian size, failing if it does not fit in a safe integer. */
export function readSafeUInt64(buf: Buffer, at: number, field: string, structure: string, where: Where): number {
  const value = buf.readBigUInt64BE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VhdError("VHD_BAD_FIELD", `${field} ${value} is too large`, { file: where.file, structure, offset: where.offset });
  }
  return Number(value);
}

/** Builds a footer for a new dynamic or differencing disk. */
export function newFooter(options: {
  currentSize: number;
  diskType: DiskType;
  uuid: string;
  creatorApplication?: string;
  timestamp?: Date;
}): VhdFooter {
  return {
    features: FEATURES_RESERVED,
    fileFormatVersion: FILE_FORMAT_VERSION,
    dataOffset: options.diskType === DiskType.Fixed ? null : FOOTER_SIZE,
    timestamp: options.timestamp ?? new Date(),
    creatorApplication: options.creatorApplication ?? "cain",
    creatorVersion: 0x00010000,
    creatorHostOs: 0,
    originalSize: options.currentSize,
    currentSize: options.currentSize,
    geometry: geometryForSize(options.currentSize),
    diskType: options.diskType,
    checksum: 0,
    uuid: options.uuid,
    savedState: false,
  };
}

/** Encodes a footer into 512 bytes, computing its checksum. */
export function encodeFooter(footer: VhdFooter): Buffer {
  const buf = Buffer.alloc(FOOTER_SIZE);
  buf.write(FOOTER_COOKIE, 0, "latin1");
  buf.writeUInt32BE(footer.features, 8);
  buf.writeUInt32BE(footer.fileFormatVersion, 12);
  buf.writeBigUInt64BE(footer.dataOffset === null ? ALL_ONES : BigInt(footer.dataOffset), 16);
  buf.writeUInt32BE(toVhdTimestamp(footer.timestamp), 24);
  buf.write(footer.creatorApplication.padEnd(4, "\0").slice(0, 4), 28, "latin1");
  buf.writeUInt32BE(footer.creatorVersion, 32);
  buf.writeUInt32BE(footer.creatorHostOs, 36);
  buf.writeBigUInt64BE(BigInt(footer.originalSize), 40);
  buf.writeBigUInt64BE(BigInt(footer.currentSize), 48);
  buf.writeUInt16BE(footer.geometry.cylinders, 56);
  buf.writeUInt8(footer.geometry.heads, 58);
  buf.writeUInt8(footer.geometry.sectorsPerTrack, 59);
  buf.writeUInt32BE(footer.diskType, 60);
  uuidToBytes(footer.uuid).copy(buf, 68);
  buf.writeUInt8(footer.savedState ? 1 : 0, 84);
  buf.writeUInt32BE(vhdChecksum(buf, 64), 64);
  return buf;
}

/**
 * Decodes and checks a footer: cookie, checksum, disk type, data offset.
 * @throws VhdError VHD_BAD_COOKIE, VHD_BAD_CHECKSUM, VHD_BAD_FIELD, VHD_TRUNCATED (fewer than 512 bytes)
 */
export function decodeFooter(buf: Buffer, where: Where, structure = "footer"): VhdFooter {
  const place = { file: where.file, structure, offset: where.offset };
  if (buf.length < FOOTER_SIZE) {
    throw new VhdError("VHD_TRUNCATED", `expected ${FOOTER_SIZE} bytes, got ${buf.length}`, place);
  }
  const cookie = buf.toString("latin1", 0, 8);
  if (cookie !== FOOTER_COOKIE) {
    throw new VhdError("VHD_BAD_COOKIE", `expected cookie "${FOOTER_COOKIE}", found ${JSON.stringify(cookie)}`, place);
  }
  const stored = buf.readUInt32BE(64);
  const computed = vhdChecksum(buf.subarray(0, FOOTER_SIZE), 64);
  if (stored !== computed) {
    throw new VhdError("VHD_BAD_CHECKSUM", `checksum 0x${hex(stored)} does not match computed 0x${hex(computed)}`, place);
  }
  const diskType = buf.readUInt32BE(60);
  if (diskType !== DiskType.Fixed && diskType !== DiskType.Dynamic && diskType !== DiskType.Differencing) {
    throw new VhdError("VHD_UNSUPPORTED", `disk type ${diskType} (only 2 fixed, 3 dynamic, 4 differencing)`, place);
  }
  const rawDataOffset = buf.readBigUInt64BE(16);
  const dataOffset = rawDataOffset === ALL_ONES ? null : readSafeUInt64(buf, 16, "data offset", structure, where);
  if (diskType !== DiskType.Fixed && dataOffset === null) {
    throw new VhdError("VHD_BAD_FIELD", `data offset is unset for a ${DiskType[diskType]} disk`, place);
  }
  return {
    features: buf.readUInt32BE(8),
    fileFormatVersion: buf.readUInt32BE(12),
    dataOffset,
    timestamp: fromVhdTimestamp(buf.readUInt32BE(24)),
    creatorApplication: buf.toString("latin1", 28, 32),
    creatorVersion: buf.readUInt32BE(32),
    creatorHostOs: buf.readUInt32BE(36),
    originalSize: readSafeUInt64(buf, 40, "original size", structure, where),
    currentSize: readSafeUInt64(buf, 48, "current size", structure, where),
    geometry: { cylinders: buf.readUInt16BE(56), heads: buf.readUInt8(58), sectorsPerTrack: buf.readUInt8(59) },
    diskType,
    checksum: stored,
    uuid: uuidFromBytes(buf.subarray(68, 84)),
    savedState: buf.readUInt8(84) === 1,
  };
}

export function hex(value: number): string {
  return value.toString(16).padStart(8, "0");
}
