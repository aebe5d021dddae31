import { XvaError } from "./xva-error.js";

/** ustar block size: headers are one block, file data is padded to a whole number of blocks. */
export const TAR_BLOCK = 512;
/** The end-of-archive marker: two zero blocks. */
export const TAR_TRAILER = Buffer.alloc(2 * TAR_BLOCK);
const MAX_OCTAL_SIZE = 0o77777777777;

function writeOctal(buf: Buffer, value: number, at: number, width: number): void {
  buf.write(value.toString(8).padStart(width - 1, "0") + "\0", at, width, "latin1");
}

/** Bytes of zero padding after `size` bytes of file data. */
export function tarPadding(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

/** A POSIX ustar header for a regular file. Names up to 100 bytes (every XVA name fits). */
export function encodeTarHeader(name: string, size: number, mtime = 0): Buffer {
  const nameBytes = Buffer.from(name, "utf8");
  if (nameBytes.length > 100) throw new XvaError("XVA_BAD_INPUT", `tar entry name is longer than 100 bytes`, { entry: name });
  if (size > MAX_OCTAL_SIZE) throw new XvaError("XVA_BAD_INPUT", `tar entry of ${size} bytes exceeds the ustar limit`, { entry: name });
  const buf = Buffer.alloc(TAR_BLOCK);
  nameBytes.copy(buf, 0);
  writeOctal(buf, 0o644, 100, 8);
  writeOctal(buf, 0, 108, 8);
  writeOctal(buf, 0, 116, 8);
  writeOctal(buf, size, 124, 12);
  writeOctal(buf, mtime, 136, 12);
  buf.fill(0x20, 148, 156);
  buf.write("0", 156, "latin1");
  buf.write("ustar\0" + "00", 257, "latin1");
  let sum = 0;
  for (const byte of buf) sum += byte;
  buf.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1");
  return buf;
}

export interface TarHeader {
  name: string;
  size: number;
  /** '0' or '\0' regular file, 'L' GNU long name, 'x'/'g' pax headers, ... */
  type: string;
}

function readNumber(buf: Buffer, at: number, width: number, field: string, offset: number): number {
  if (buf[at] & 0x80) {
    // GNU base-256 for big values
    let value = 0;
    for (let i = 1; i < width; i++) value = value * 256 + buf[at + i];
    return value;
  }
  const text = buf
    .toString("latin1", at, at + width)
    .replace(/[\0 ]+$/g, "")
    .trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new XvaError("XVA_BAD_TAR", `${field} field ${JSON.stringify(text)} is not octal`, { offset });
  return parseInt(text, 8);
}

/** Whether a 512-byte block is all zeros (the end-of-archive marker). */
export function isZeroBlock(buf: Buffer): boolean {
  return buf.equals(TAR_TRAILER.subarray(0, TAR_BLOCK));
}

/**
 * Decodes a tar header block, verifying its checksum.
 * @throws XvaError XVA_BAD_TAR with the offset of the header
 */
export function decodeTarHeader(buf: Buffer, offset: number): TarHeader {
  const stored = readNumber(buf, 148, 8, "checksum", offset);
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : buf[i];
  if (stored !== sum) throw new XvaError("XVA_BAD_TAR", `header checksum ${stored} does not match computed ${sum}`, { offset });
  let name = buf.toString("utf8", 0, 100).replace(/\0.*$/s, "");
  if (buf.toString("latin1", 257, 262) === "ustar") {
    const prefix = buf.toString("utf8", 345, 500).replace(/\0.*$/s, "");
    if (prefix) name = `${prefix}/${name}`;
  }
  return { name, size: readNumber(buf, 124, 12, "size", offset), type: String.fromCharCode(buf[156] || 0x30) };
}
