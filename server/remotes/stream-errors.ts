import { PassThrough, type Readable } from "node:stream";

/**
 * Returns a stream carrying `source`'s bytes whose errors are `translate(error)`, so a consumer of a
 * remote's read stream only ever sees `RemoteError`s. Backpressure goes through (`pipe`), and
 * destroying the returned stream destroys `source` (no dangling socket or file descriptor).
 */
export function translateStreamErrors(source: Readable, translate: (error: unknown) => Error): Readable {
  const output = new PassThrough({ highWaterMark: source.readableHighWaterMark });
  source.on("error", (error) => output.destroy(translate(error)));
  output.on("close", () => {
    if (!source.destroyed) source.destroy();
  });
  source.pipe(output);
  return output;
}

/**
 * Remembers whether an error came from the caller's source stream, so that a write can give back the
 * source's own error unchanged rather than blaming the remote for it.
 */
export function watchSourceErrors(source: Readable): { readonly error: unknown; failed(error: unknown): boolean } {
  let sourceError: unknown;
  let seen = false;
  source.on("error", (error) => {
    if (seen) return;
    seen = true;
    sourceError = error;
  });
  return {
    get error() {
      return sourceError;
    },
    failed(error: unknown) {
      return seen && error === sourceError;
    },
  };
}

/** The error of a write stopped by its signal, as `pipeline()` makes it: an AbortError whose cause is the signal's reason. */
export function writeAbortError(signal: AbortSignal | undefined): Error {
  return Object.assign(new Error("The write was aborted", { cause: signal?.reason }), { name: "AbortError" });
}

/**
 * What a write that failed with `error` rejects with when its signal fired: `error` when it is an AbortError already,
 * else {@link writeAbortError} (a signal aborted with a reason of its own makes `throwIfAborted()` throw that reason).
 * Undefined when the signal did not fire and the error is not an AbortError.
 */
export function asWriteAbortError(error: unknown, signal: AbortSignal | undefined): Error | undefined {
  if ((error as Error | undefined)?.name === "AbortError") return error as Error;
  return signal?.aborted === true ? writeAbortError(signal) : undefined;
}
