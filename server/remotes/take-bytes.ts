import { Transform, type Readable } from "node:stream";

/**
 * Passes on the first `limit` bytes of `source` and ends there, destroying `source` so the rest is
 * never downloaded. Guards against S3-compatible servers that answer a ranged GET with more than the
 * range (s3rver, for one, sends the whole object for `bytes=0-0`).
 */
export function takeBytes(source: Readable, limit: number): Readable {
  let left = limit;
  const output = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (left <= 0) return callback();
      const part = chunk.length <= left ? chunk : chunk.subarray(0, left);
      left -= part.length;
      callback(null, part);
      if (left === 0) {
        this.push(null);
        source.unpipe(this);
        source.destroy();
        this.end();
      }
    },
  });
  // Once the limit is reached the source is destroyed on purpose; a late error from it is moot.
  source.on("error", (error) => {
    if (left > 0) output.destroy(error);
  });
  output.on("close", () => {
    if (!source.destroyed) source.destroy();
  });
  if (limit === 0) {
    output.end();
    source.destroy();
    return output;
  }
  return source.pipe(output);
}
