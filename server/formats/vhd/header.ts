import { vhdChecksum } from "./checksum.js";
import {
  HEADER_COOKIE,
  HEADER_SIZE,
  HEADER_VERSION,
  PARENT_LOCATOR_COUNT,
  PARENT_NAME_BYTES,
  PlatformCode,
  SECTOR_SIZE,
} from "./constants.js";
import { type Where, fromVhdTimestamp, hex, readSafeUInt64, toVhdTimestamp } from "./footer.js";
import { uuidFromBytes, uuidToBytes } from "./uuid.js";
import { VhdError } from "./vhd-error.js";

/** One of the eight parent locator entries of a dynamic header. */
export interface ParentLocator {
  platformCode: PlatformCode | number;
  /** As stored: sectors per the spec (what Cairn writes), bytes for some tools. */
  platformDataSpace: number;
  platformDataLength: number;
  platformDataOffset: number;
}

/** The 1024-byte dynamic disk header, decoded. */
export interface VhdHeader {
  tableOffset: number;
  headerVersion: number;
  maxTableEntries: number;
  blockSize: number;
  checksum: number;
  /** Differencing disks: the parent footer's unique id; all-zero uuid otherwise. */
  parentUuid: string;
  parentTimestamp: Date;
  parentUnicodeName: string;
  parentLocators: ParentLocator[];
}

export const NULL_UUID = "00000000-0000-0000-0000-000000000000";

const ALL_ONES = 0xffffffffffffffffn;

export function emptyLocators(): ParentLocator[] {
  return Array.from({ length: PARENT_LOCATOR_COUNT }, () => ({
    platformCode: PlatformCode.None,
    platformDataSpace: 0,
    platformDataLength: 0,
    platformDataOffset: 0,
  }));
}

/** Encodes a header into 1024 bytes, computing its checksum. */
export function encodeHeader(header: VhdHeader): Buffer {
  const buf = Buffer.alloc(HEADER_SIZE);
  buf.write(HEADER_COOKIE, 0, "latin1");
  buf.writeBigUInt64BE(ALL_ONES, 8);
  buf.writeBigUInt64BE(BigInt(header.tableOffset), 16);
  buf.writeUInt32BE(header.headerVersion, 24);
  buf.writeUInt32BE(header.maxTableEntries, 28);
  buf.writeUInt32BE(header.blockSize, 32);
  uuidToBytes(header.parentUuid).copy(buf, 40);
  buf.writeUInt32BE(header.parentUuid === NULL_UUID ? 0 : toVhdTimestamp(header.parentTimestamp), 56);
  const name = Buffer.from(header.parentUnicodeName, "utf16le").swap16();
  name.copy(buf, 64, 0, Math.min(name.length, PARENT_NAME_BYTES));
  header.parentLocators.forEach((locator, i) => {
    const at = 576 + i * 24;
    buf.writeUInt32BE(locator.platformCode >>> 0, at);
    buf.writeUInt32BE(locator.platformDataSpace, at + 4);
    buf.writeUInt32BE(locator.platformDataLength, at + 8);
    buf.writeBigUInt64BE(BigInt(locator.platformDataOffset), at + 16);
  });
  buf.writeUInt32BE(vhdChecksum(buf, 36), 36);
  return buf;
}

/**
 * Decodes and checks a dynamic disk header: cookie, checksum, version, data offset, block size.
 * @throws VhdError VHD_BAD_COOKIE, VHD_BAD_CHECKSUM, VHD_BAD_FIELD, VHD_TRUNCATED
 */
export function decodeHeader(buf: Buffer, where: Where): VhdHeader {
  const place = { file: where.file, structure: "header", offset: where.offset };
  if (buf.length < HEADER_SIZE) {
    throw new VhdError("VHD_TRUNCATED", `expected ${HEADER_SIZE} bytes, got ${buf.length}`, place);
  }
  const cookie = buf.toString("latin1", 0, 8);
  if (cookie !== HEADER_COOKIE) {
    throw new VhdError("VHD_BAD_COOKIE", `expected cookie "${HEADER_COOKIE}", found ${JSON.stringify(cookie)}`, place);
  }
  const stored = buf.readUInt32BE(36);
  const computed = vhdChecksum(buf.subarray(0, HEADER_SIZE), 36);
  if (stored !== computed) {
    throw new VhdError("VHD_BAD_CHECKSUM", `checksum 0x${hex(stored)} does not match computed 0x${hex(computed)}`, place);
  }
  if (buf.readBigUInt64BE(8) !== ALL_ONES) {
    throw new VhdError("VHD_BAD_FIELD", "data offset must be all ones", place);
  }
  const headerVersion = buf.readUInt32BE(24);
  if (headerVersion !== HEADER_VERSION) {
    throw new VhdError("VHD_BAD_FIELD", `header version 0x${hex(headerVersion)} (expected 0x00010000)`, place);
  }
  const blockSize = buf.readUInt32BE(32);
  if (blockSize < SECTOR_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new VhdError("VHD_BAD_FIELD", `block size ${blockSize} is not a power of two of at least 512`, place);
  }
  const parentLocators: ParentLocator[] = [];
  for (let i = 0; i < PARENT_LOCATOR_COUNT; i++) {
    const at = 576 + i * 24;
    parentLocators.push({
      platformCode: buf.readUInt32BE(at),
      platformDataSpace: buf.readUInt32BE(at + 4),
      platformDataLength: buf.readUInt32BE(at + 8),
      platformDataOffset: readSafeUInt64(buf, at + 16, `parent locator ${i} offset`, "header", where),
    });
  }
  const name = Buffer.from(buf.subarray(64, 64 + PARENT_NAME_BYTES))
    .swap16()
    .toString("utf16le");
  return {
    tableOffset: readSafeUInt64(buf, 16, "table offset", "header", where),
    headerVersion,
    maxTableEntries: buf.readUInt32BE(28),
    blockSize,
    checksum: stored,
    parentUuid: uuidFromBytes(buf.subarray(40, 56)),
    parentTimestamp: fromVhdTimestamp(buf.readUInt32BE(56)),
    parentUnicodeName: name.replace(/\0+$/, ""),
    parentLocators,
  };
}
