import { execFile } from "node:child_process";
import { createWriteStream } from "node:fs";
import { open, writeFile } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { VHD_BLOCK_SIZE, type VhdBlock, type VhdWriteOptions, createVhdStream } from "../../../server/formats/vhd/index.js";
import { SeededRandom } from "./seeded-random.js";

export const run = promisify(execFile);

/** Writes a raw disk of `size` bytes with random data at random 4 KiB-aligned extents (sparse elsewhere). */
export async function makeRawDisk(path: string, size: number, seed: number, extents = 8): Promise<void> {
  await writeFile(path, "");
  const handle = await open(path, "r+");
  try {
    await handle.truncate(size);
    const random = new SeededRandom(seed);
    for (let i = 0; i < extents && size > 0; i++) {
      const offset = random.int(size / 4096) * 4096;
      const length = Math.min(size - offset, (1 + random.int(256)) * 4096);
      await handle.write(random.fill(Buffer.alloc(length)), 0, length, offset);
    }
  } finally {
    await handle.close();
  }
}

/** The indexes of the 2 MiB blocks of a raw file holding any non-zero byte (a two-pass plan's first pass). */
export async function nonZeroBlocks(path: string, size: number): Promise<number[]> {
  const handle = await open(path, "r");
  const indexes: number[] = [];
  try {
    const buf = Buffer.alloc(VHD_BLOCK_SIZE);
    for (let index = 0; index * VHD_BLOCK_SIZE < size; index++) {
      buf.fill(0);
      await handle.read(buf, 0, Math.min(VHD_BLOCK_SIZE, size - index * VHD_BLOCK_SIZE), index * VHD_BLOCK_SIZE);
      if (buf.some((b) => b !== 0)) indexes.push(index);
    }
  } finally {
    await handle.close();
  }
  return indexes;
}

/** The blocks of a raw file at `indexes`, read one at a time. */
export async function* rawBlocks(path: string, size: number, indexes: readonly number[]): AsyncGenerator<VhdBlock> {
  const handle = await open(path, "r");
  try {
    for (const index of indexes) {
      const data = Buffer.alloc(VHD_BLOCK_SIZE);
      await handle.read(data, 0, Math.min(VHD_BLOCK_SIZE, size - index * VHD_BLOCK_SIZE), index * VHD_BLOCK_SIZE);
      yield { index, data };
    }
  } finally {
    await handle.close();
  }
}

/** Converts a raw file into a dynamic VHD with our streaming writer. */
export async function rawToVhd(raw: string, vhd: string, size: number, extra: Partial<VhdWriteOptions> = {}): Promise<number[]> {
  const blockIndexes = await nonZeroBlocks(raw, size);
  await pipeline(
    createVhdStream({ virtualSize: size, blockIndexes, blocks: rawBlocks(raw, size, blockIndexes), ...extra }),
    createWriteStream(vhd),
  );
  return blockIndexes;
}
