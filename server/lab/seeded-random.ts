import { createCipheriv, createHash } from "node:crypto";

/**
 * Deterministic pseudo-random data for the lab: the same seed and label always give the same bytes,
 * so tests can recompute what a disk or a file holds.
 */
export class SeededRandom {
  private state: number;

  constructor(readonly seed: string) {
    this.state = createHash("sha256").update(seed).digest().readUInt32LE(0) || 1;
  }

  /** A 32-bit unsigned integer (mulberry32). */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** An integer in [0, bound). */
  below(bound: number): number {
    return Math.floor((this.nextUint32() / 0x1_0000_0000) * bound);
  }

  /** `count` distinct integers of [0, bound), sorted. */
  distinct(count: number, bound: number): number[] {
    const chosen = new Set<number>();
    const wanted = Math.min(count, bound);
    while (chosen.size < wanted) chosen.add(this.below(bound));
    return [...chosen].sort((a, b) => a - b);
  }
}

/** `length` deterministic bytes for `(seed, label)`: an AES-128-CTR key stream, fast enough for GiBs. */
export function seededBytes(seed: string, label: string, length: number): Buffer {
  const key = createHash("sha256").update(`${seed}\0${label}`).digest();
  const cipher = createCipheriv("aes-128-ctr", key.subarray(0, 16), key.subarray(16, 32));
  return cipher.update(Buffer.alloc(length));
}
