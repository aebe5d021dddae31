/**
 * Memory that stays reachable, for tests that bound what a stream holds: read right after a full collection.
 *
 * V8 frees the backing stores of dead ArrayBuffers (every Buffer's bytes) on a background thread after a collection, and
 * `process.memoryUsage().arrayBuffers` counts them until that thread is done: measured on Node.js 20 and 24, 64 dead 2 MiB
 * Buffers still counted 128 MB right after `gc()` in some rounds, 2 MB with the sweeping done in the collection itself. A
 * bound read otherwise depends on that thread's luck (a busy machine), not on what the code under test holds.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

// Both flags are read when needed: `gc` when it is first asked for, the sweeping flag at each collection.
setFlagsFromString("--expose_gc");
setFlagsFromString("--no-concurrent-array-buffer-sweeping");
const gc = runInNewContext("gc") as () => void;

/** Bytes reachable now: the JavaScript heap in use and the bytes of live ArrayBuffers, after a full collection. */
export function reachableBytes(): number {
  gc();
  const now = process.memoryUsage();
  return now.heapUsed + now.arrayBuffers;
}

/** Bytes of live ArrayBuffers (Buffers' bytes) after a full collection. */
export function reachableArrayBufferBytes(): number {
  gc();
  return process.memoryUsage().arrayBuffers;
}
