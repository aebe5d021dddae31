import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { type S3ApiProxy, startS3ApiProxy } from "./s3-api-proxy.js";

/** A running s3rver (a real S3 HTTP server on a temp folder) for tests. */
export interface S3rverPeer {
  /** The S3 API as clients should reach it: s3rver behind {@link S3rverPeer.api}. */
  endpoint: string;
  /** s3rver itself, without the proxy (no UploadPartCopy, no AbortMultipartUpload, nothing checked). */
  s3rverEndpoint: string;
  /** The proxy in front: what s3rver lacks (UploadPartCopy, AbortMultipartUpload), S3's rules checked, bytes counted. */
  api: S3ApiProxy;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  stop(): Promise<void>;
}

const READY_HANG_MS = 60_000;

/**
 * Starts s3rver 3.7.1 in a child process on 127.0.0.1 and a free port, with one bucket. It runs under
 * `--openssl-legacy-provider` because its paginated listings encrypt the continuation token with DES.
 * s3rver accepts any signature for its fixed key pair (S3RVER / S3RVER), so it cannot catch signing bugs.
 * Clients reach it through an S3 API proxy (`s3-api-proxy.ts`) that adds UploadPartCopy and AbortMultipartUpload and
 * refuses multipart uploads that break S3's rules, as S3 does.
 */
export async function startS3rver(bucket = "backups"): Promise<S3rverPeer> {
  const directory = await mkdtemp(join(tmpdir(), "cairn-s3rver-"));
  const script = createRequire(import.meta.url).resolve("s3rver/bin/s3rver.js");
  const child: ChildProcess = spawn(
    process.execPath,
    ["--openssl-legacy-provider", script, "-d", directory, "-a", "127.0.0.1", "-p", "0", "-s", "--configure-bucket", bucket],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

  let hang: NodeJS.Timeout | undefined;
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      const match = /listening on [^:]+:(\d+)/.exec(line);
      if (match !== null) resolve(Number(match[1]));
    });
    child.once("error", reject);
    void exited.then((code) => reject(new Error(`s3rver exited with ${code} before listening: ${stderr}`)));
    // Only bounds a hang.
    hang = setTimeout(() => reject(new Error(`s3rver did not listen within ${READY_HANG_MS} ms: ${stderr}`)), READY_HANG_MS);
  })
    .catch(async (error: unknown) => {
      // Never leave the process behind a failed start.
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      if (child.pid !== undefined) await exited;
      await rm(directory, { recursive: true, force: true });
      throw error;
    })
    .finally(() => clearTimeout(hang));

  const s3rverEndpoint = `http://127.0.0.1:${port}`;
  const api = await startS3ApiProxy(s3rverEndpoint).catch(async (error: unknown) => {
    child.kill("SIGTERM");
    await exited;
    await rm(directory, { recursive: true, force: true });
    throw error;
  });
  return {
    endpoint: api.endpoint,
    s3rverEndpoint,
    api,
    bucket,
    accessKeyId: "S3RVER",
    secretAccessKey: "S3RVER",
    async stop() {
      await api.stop();
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
      await rm(directory, { recursive: true, force: true });
    },
  };
}
