import type { GetObjectCommandOutput, S3Client } from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import { Transform, type Readable } from "node:stream";
import { RemoteError } from "./remote-error.js";

/**
 * Checksums on the way to and from S3.
 *
 * Uploads: every request that carries object data (PutObject, UploadPart) gets a Content-MD5 of its
 * body, which S3 and the common compatible servers check before storing anything (BadDigest
 * otherwise): a byte damaged between this process and the server is refused instead of stored.
 * (s3rver, the test peer, checks nothing: see README.md.)
 * Bodies are already in memory when sent (lib-storage buffers each part, writeFile has its bytes),
 * so hashing them costs no extra memory.
 *
 * Reads: a whole read is compared with what the server says the object's bytes were (see
 * {@link expectedMd5Of}); a ranged read cannot be, since no checksum covers an arbitrary range.
 */

/** The commands whose body becomes stored data. */
const COMMANDS_WITH_DATA = new Set(["PutObjectCommand", "UploadPartCommand"]);

/** Adds the Content-MD5 middleware to a client (once per client). */
export function addContentMd5(client: S3Client): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (!COMMANDS_WITH_DATA.has(context.commandName ?? "")) return next(args);
      const request = args.request as { headers: Record<string, string>; body?: unknown };
      const body = request.body ?? "";
      if (typeof body !== "string" && !(body instanceof Uint8Array)) {
        // Hashing a stream here would need it in memory: every caller in this folder sends bytes.
        throw new Error(`S3Remote: a ${context.commandName} body must be bytes to carry a Content-MD5 (a bug)`);
      }
      request.headers["content-md5"] = createHash("md5").update(body).digest("base64");
      return next(args);
    },
    { step: "build", name: "cairnContentMd5", override: true },
  );
}

/**
 * The MD5 (hex) that a whole read of the object must hash to, or undefined when the server gives
 * none. An ETag of 32 hex digits is the MD5 of the bytes for an object stored by one PutObject (AWS,
 * MinIO, Ceph, s3rver, which also gives one for multipart objects); a multipart ETag ("...-3") is not,
 * and neither is the ETag of an object encrypted with SSE-KMS or SSE-C (AWS says so).
 */
export function expectedMd5Of(
  output: Pick<GetObjectCommandOutput, "ETag" | "ServerSideEncryption" | "SSECustomerAlgorithm">,
): string | undefined {
  const etag = (output.ETag ?? "").replace(/"/g, "").toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(etag)) return undefined;
  if ((output.ServerSideEncryption ?? "").startsWith("aws:kms") || output.SSECustomerAlgorithm !== undefined) return undefined;
  return etag;
}

/**
 * Passes `body` through, hashing it, and fails at its end with `mismatch(expected, actual)` instead
 * of ending when the bytes do not hash to `expectedMd5`. Backpressure goes through.
 */
export function verifyMd5(body: Readable, expectedMd5: string, mismatch: (detail: string) => Error): Readable {
  const hash = createHash("md5");
  const output = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      const actual = hash.digest("hex");
      callback(actual === expectedMd5 ? null : mismatch(md5MismatchDetail(expectedMd5, actual)));
    },
  });
  body.on("error", (error) => output.destroy(error));
  output.on("close", () => {
    if (!body.destroyed) body.destroy();
  });
  return body.pipe(output);
}

/** Why a read failed its MD5 check, for {@link objectIntegrityError}. */
export function md5MismatchDetail(expectedMd5: string, actualMd5: string): string {
  return `the ETag says MD5 ${expectedMd5}, the bytes read hash to ${actualMd5}`;
}

/** Whether `error` is the SDK's own check of a stored checksum failing (`ChecksumMode: "ENABLED"`). */
export function isSdkChecksumMismatch(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("Checksum mismatch");
}

/** The error of a read whose bytes do not match the object's checksum. */
export function objectIntegrityError(where: { remote: string; path: string }, detail: string, cause?: unknown): RemoteError {
  return new RemoteError({
    ...where,
    code: "IO",
    operation: "read",
    // A byte damaged in transit reads fine the next time; a damaged stored object fails again.
    transient: true,
    detail: `the object's bytes do not match its checksum (${detail})`,
    hint: "read it again; if it fails again, the stored copy is damaged: use another copy of this backup",
    cause,
  });
}
