/**
 * One source stream, one fork per target. The source flows at the pace of the slowest live fork (backpressure end to end);
 * a fork whose consumer fails is cut off alone (its error recorded) and the others go on; when every fork has failed the
 * source is destroyed. Imitates Xen Orchestra's forkStreamUnpipe, without mutating the streams it is given.
 */
import { PassThrough, type Readable } from "node:stream";

export interface Fork {
  stream: Readable;
  /** Cuts this fork off (its consumer failed); the error is kept in `error`. */
  cut(error: unknown): void;
  readonly error: unknown;
}

export function forkStream(source: Readable, count: number, highWaterMark = 4 * 1024 * 1024): Fork[] {
  const forks = Array.from({ length: count }, () => {
    const stream = new PassThrough({ highWaterMark });
    const fork = {
      stream,
      error: undefined as unknown,
      alive: true,
      cut(error: unknown) {
        if (!fork.alive) return;
        fork.alive = false;
        fork.error = error;
        stream.destroy(error instanceof Error ? error : new Error(String(error)));
        if (forks.every((f) => !f.alive)) source.destroy();
        else if (waiting.has(fork)) {
          waiting.delete(fork);
          if (waiting.size === 0) source.resume();
        }
      },
    };
    return fork;
  });
  const waiting = new Set<(typeof forks)[number]>();

  source.on("data", (chunk: Buffer) => {
    for (const fork of forks) {
      if (!fork.alive) continue;
      if (!fork.stream.write(chunk)) {
        waiting.add(fork);
        fork.stream.once("drain", () => {
          waiting.delete(fork);
          if (waiting.size === 0) source.resume();
        });
      }
    }
    if (waiting.size > 0) source.pause();
  });
  source.once("end", () => {
    for (const fork of forks) if (fork.alive) fork.stream.end();
  });
  source.once("error", (error) => {
    for (const fork of forks) if (fork.alive) fork.stream.destroy(error);
  });
  source.once("close", () => {
    // A source closed without "end" (destroyed, connection cut) must not leave a fork waiting forever.
    if (source.readableEnded) return;
    const error = new Error("the source stream closed before its end");
    for (const fork of forks) if (fork.alive && !fork.stream.destroyed) fork.stream.destroy(error);
  });
  return forks.map((fork) => ({
    stream: fork.stream,
    cut: (error: unknown) => fork.cut(error),
    get error() {
      return fork.error;
    },
  }));
}
