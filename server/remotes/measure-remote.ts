import { createHash, randomBytes, randomFillSync } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { RemoteError, describeCause } from "./remote-error.js";
import type { Remote, SpaceInfo } from "./remote.js";

/** Options of {@link measureRemote}. */
export interface MeasureOptions {
  /** Size of the test file. @default 16 MiB */
  sizeBytes?: number;
  /** Aborts the measure; the test file is removed. */
  signal?: AbortSignal;
}

/** What {@link measureRemote} found. Rates are 0 when the step did not complete. */
export interface MeasureResult {
  /** Whether the file was written, read back identical, and deleted. */
  ok: boolean;
  sizeBytes: number;
  writeBytesPerSecond: number;
  readBytesPerSecond: number;
  /** Space figures, when the remote could tell them. */
  space: SpaceInfo;
  /** Why it failed (the code of a `RemoteError`, or "IO"/"CORRUPTED" otherwise), absent when ok. */
  error?: { code: string; message: string };
  testedAt: Date;
}

const CHUNK = 1024 * 1024;

/** A stream of `size` random bytes, generated a chunk at a time, hashed as it goes. */
function randomSource(size: number, hash: ReturnType<typeof createHash>): Readable {
  let left = size;
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (left === 0) {
        this.push(null);
        return;
      }
      const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(CHUNK, left)));
      left -= chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
}

function perSecond(bytes: number, startedAt: bigint): number {
  const seconds = Number(process.hrtime.bigint() - startedAt) / 1e9;
  return seconds > 0 ? Math.round(bytes / seconds) : 0;
}

/**
 * Tests a remote end to end: writes `sizeBytes` random bytes to a reserved temporary name at its root
 * (`.cairn-measure.tmp-<16 hex>`, which cleaners recognise should the process die meanwhile), reads
 * them back, compares sha256, deletes the file, and reads the space figures. Never throws: a failure
 * is reported in `ok`/`error`, with the rates measured so far. The `testRemote` mutation calls this.
 */
export async function measureRemote(remote: Remote, options: MeasureOptions = {}): Promise<MeasureResult> {
  const sizeBytes = options.sizeBytes ?? 16 * CHUNK;
  const result: MeasureResult = { ok: false, sizeBytes, writeBytesPerSecond: 0, readBytesPerSecond: 0, space: {}, testedAt: new Date() };
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
    result.error = { code: "INVALID_ARGUMENT", message: `sizeBytes must be a positive integer, got ${String(sizeBytes)}` };
    return result;
  }
  const path = `.cairn-measure.tmp-${randomBytes(8).toString("hex")}`;
  let written = false;
  try {
    await remote.open();
    const writeHash = createHash("sha256");
    let startedAt = process.hrtime.bigint();
    const { bytes } = await remote.writeStream(path, randomSource(sizeBytes, writeHash), { signal: options.signal, sizeHint: sizeBytes });
    written = true;
    result.writeBytesPerSecond = perSecond(bytes, startedAt);

    const readHash = createHash("sha256");
    let readBytes = 0;
    startedAt = process.hrtime.bigint();
    const hashing = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        readBytes += chunk.length;
        readHash.update(chunk);
        callback();
      },
    });
    await pipeline(await remote.createReadStream(path), hashing, { signal: options.signal });
    result.readBytesPerSecond = perSecond(readBytes, startedAt);

    if (readBytes !== sizeBytes || !readHash.digest().equals(writeHash.digest())) {
      result.error = {
        code: "CORRUPTED",
        message: `the ${sizeBytes}-byte test file came back different (${readBytes} bytes, other sha256) from ${remote.name}: the storage returns wrong data`,
      };
    }
    await remote.delete(path);
    written = false;
    result.space = await remote.spaceInfo();
    result.ok = result.error === undefined;
  } catch (error) {
    result.error = {
      code: error instanceof RemoteError ? error.code : (error as Error | undefined)?.name === "AbortError" ? "ABORTED" : "IO",
      message: error instanceof RemoteError ? error.message : `measure of ${remote.name} failed: ${describeCause(error)}`,
    };
  } finally {
    if (written) {
      // The measure already failed and says why; a file left behind keeps its temporary name, where cleaners look.
      await remote.delete(path).catch(() => undefined);
    }
  }
  return result;
}
