import { open, writeFile } from "node:fs/promises";
import { VhdFile, checksumVhdFile, encodeBlockChecksums, type VhdBlockChecksums } from "../../../server/formats/vhd/index.js";

/** The block checksums of a VHD file as it is now. */
export async function checksumsOf(path: string): Promise<VhdBlockChecksums> {
  const file = await VhdFile.open(path);
  try {
    return await checksumVhdFile(file);
  } finally {
    await file.close();
  }
}

/** Writes the sidecar of a VHD beside it (`<path>.blocksums`, the name the repository uses) and returns its path. */
export async function writeSidecar(path: string): Promise<string> {
  const sidecar = `${path}.blocksums`;
  await writeFile(sidecar, encodeBlockChecksums(await checksumsOf(path)));
  return sidecar;
}

/** Flips (xor 0xff) the byte at `offset` of a file in place: the damage a bad disk sector or a bit rot leaves. */
export async function flipByte(path: string, offset: number): Promise<void> {
  const handle = await open(path, "r+");
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0] ^= 0xff;
    await handle.write(byte, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

/** Overwrites 4 bytes big-endian at `offset` (a BAT entry). */
export async function writeUInt32At(path: string, offset: number, value: number): Promise<void> {
  const handle = await open(path, "r+");
  try {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(value >>> 0);
    await handle.write(bytes, 0, 4, offset);
  } finally {
    await handle.close();
  }
}
