import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { Duplex, type Transform } from "node:stream";
import { createGunzip, createGzip } from "node:zlib";

export type Compression = "none" | "gzip" | "zstd";

/** A compressor or decompressor process failed (missing binary, corrupt input, non-zero exit). */
export class CompressionError extends Error {
  readonly code = "COMPRESSION_FAILED";
  constructor(message: string) {
    super(`COMPRESSION_FAILED: ${message}`);
    this.name = "CompressionError";
  }
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** The compression of a stream from its first bytes (gzip `1F 8B`, zstd `28 B5 2F FD`), else "none". */
export function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head.subarray(0, 2).equals(GZIP_MAGIC)) return "gzip";
  if (head.length >= 4 && head.subarray(0, 4).equals(ZSTD_MAGIC)) return "zstd";
  return "none";
}

/**
 * Pipes bytes through a child process (stdin -> stdout) as one Duplex, with backpressure both ways: the
 * child's stdout is paused while our readable side is full, and writes complete only when the pipe accepts them.
 * A non-zero exit destroys the stream with a CompressionError carrying the tool's stderr.
 */
class ProcessDuplex extends Duplex {
  private readonly child: ChildProcessWithoutNullStreams;
  private stderr = "";

  constructor(command: string, args: string[]) {
    super();
    const label = [command, ...args].join(" ");
    this.child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
    this.child.stdout.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) this.child.stdout.pause();
    });
    this.child.stderr.on("data", (chunk: Buffer) => {
      if (this.stderr.length < 4096) this.stderr += chunk.toString();
    });
    this.child.on("error", (error) => this.destroy(new CompressionError(`${label}: ${error.message}`)));
    this.child.stdin.on("error", () => {
      // EPIPE when the process died early: its exit code (below) carries the real reason.
    });
    this.child.on("close", (code, signal) => {
      if (code === 0) this.push(null);
      else if (!this.destroyed) this.destroy(new CompressionError(`${label} exited with ${code ?? signal}: ${this.stderr.trim()}`));
    });
  }

  override _read(): void {
    this.child.stdout.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.child.stdin.write(chunk)) callback();
    else this.child.stdin.once("drain", () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.child.stdin.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    callback(error);
  }
}

/** zstd compression through the Debian `zstd` CLI (`zstd -c -q -T0`): Node 20's zlib has no zstd. */
export function createZstdCompress(): Duplex {
  return new ProcessDuplex("zstd", ["-c", "-q", "-T0"]);
}

/** zstd decompression through the `zstd` CLI (`zstd -d -c -q`). */
export function createZstdDecompress(): Duplex {
  return new ProcessDuplex("zstd", ["-d", "-c", "-q"]);
}

/** A compressing transform for `kind`, or undefined for "none". */
export function createCompressor(kind: Compression): Duplex | Transform | undefined {
  if (kind === "gzip") return createGzip();
  if (kind === "zstd") return createZstdCompress();
  return undefined;
}

/** A decompressing transform for `kind`, or undefined for "none". */
export function createDecompressor(kind: Compression): Duplex | Transform | undefined {
  if (kind === "gzip") return createGunzip();
  if (kind === "zstd") return createZstdDecompress();
  return undefined;
}
