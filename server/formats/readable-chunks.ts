import { type Readable, finished } from "node:stream";

/**
 * The chunks of a byte stream one by one, as they were pushed, without a copy.
 *
 * Node's own async iterator (`for await (const chunk of readable)`) reads in paused mode, where `read()` joins every chunk
 * waiting in the buffer into one new Buffer. Whenever more than one waits, that is a copy of all of them into fresh memory:
 * behind a VHD block's 512-byte bitmap, the whole 2 MiB block. On the CBT + NBD path this was 11 % of the server's time
 * (Readable's `fromList`, 356 ms of 3.2 s, two 204 MiB deltas). In flowing mode a stream hands over one chunk at a time, as
 * it is; this takes one, pauses the stream, and resumes it once the consumer asks for the next.
 *
 * Ends with the stream; throws its error, or a premature close; destroys it when the consumer stops early (as Node's
 * iterator does).
 */
export async function* readableChunks(source: Readable): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let ended = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const onData = (chunk: Buffer | Uint8Array | string) => {
    queue.push(
      typeof chunk === "string"
        ? Buffer.from(chunk)
        : Buffer.isBuffer(chunk)
          ? chunk
          : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
    );
    source.pause();
    notify();
  };
  // End, error and premature close as Node itself tells them (also for a stream that ended or failed before this looked).
  const stopWatching = finished(source, { writable: false }, (error) => {
    if (error) failure ??= { error };
    else ended = true;
    notify();
  });
  source.on("data", onData);
  source.pause();
  try {
    for (;;) {
      const chunk = queue.shift();
      if (chunk !== undefined) {
        yield chunk;
        continue;
      }
      if (failure) throw failure.error;
      if (ended) return;
      const next = new Promise<void>((resolve) => (wake = resolve));
      source.resume();
      await next;
    }
  } finally {
    source.off("data", onData);
    stopWatching();
    if (!ended && !source.destroyed) source.destroy();
  }
}
