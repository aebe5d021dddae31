import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { VHD_BLOCK_SIZE, type VhdBlock, createVhdStream } from "../../../server/formats/vhd/index.js";
import type { SeededRandom } from "./seeded-random.js";

const SECTOR = 512;

/** Applies `count` random writes (sector-aligned, 1 to 80 sectors, some across block boundaries) to `disk`; returns the touched sectors. */
export function randomWrites(disk: Buffer, random: SeededRandom, count: number): Set<number> {
  const touched = new Set<number>();
  const sectors = disk.length / SECTOR;
  for (let i = 0; i < count; i++) {
    const first = random.int(sectors);
    const length = Math.min(sectors - first, 1 + random.int(80));
    random.fill(disk.subarray(first * SECTOR, (first + length) * SECTOR));
    for (let s = first; s < first + length; s++) touched.add(s);
  }
  return touched;
}

/**
 * Writes a differencing VHD holding the sectors `touched` of `disk` (bitmap bits set for exactly those); the
 * other sectors of each block are filled with garbage, so a reader that ignores the bitmap reads wrong.
 */
export async function writeDelta(
  path: string,
  disk: Buffer,
  touched: Set<number>,
  ids: { uuid: string; parentUuid: string; parentName?: string },
  random: SeededRandom,
): Promise<number[]> {
  const perBlock = new Map<number, number[]>();
  for (const sector of touched) {
    const block = Math.floor((sector * SECTOR) / VHD_BLOCK_SIZE);
    perBlock.set(block, [...(perBlock.get(block) ?? []), sector]);
  }
  const blockIndexes = [...perBlock.keys()].sort((a, b) => a - b);
  function* blocks(): Generator<VhdBlock> {
    for (const index of blockIndexes) {
      const data = random.fill(Buffer.alloc(VHD_BLOCK_SIZE));
      const bitmap = Buffer.alloc(512);
      for (const sector of perBlock.get(index) ?? []) {
        const inBlock = sector - (index * VHD_BLOCK_SIZE) / SECTOR;
        bitmap[inBlock >> 3] |= 0x80 >> (inBlock & 7);
        disk.copy(data, inBlock * SECTOR, sector * SECTOR, (sector + 1) * SECTOR);
      }
      yield { index, data, bitmap };
    }
  }
  await pipeline(
    createVhdStream({
      virtualSize: disk.length,
      uuid: ids.uuid,
      parent: { uuid: ids.parentUuid, name: ids.parentName },
      blockIndexes,
      blocks: blocks(),
    }),
    createWriteStream(path),
  );
  return blockIndexes;
}
