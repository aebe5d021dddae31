import { open } from "node:fs/promises";

/** Flips (xor 0xff) the byte at `offset` of a local file in place: the damage a bad disk sector or a bit rot leaves. */
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
