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

export { flipByte } from "../../support/flip-byte.js";

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
