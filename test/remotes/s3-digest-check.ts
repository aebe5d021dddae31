import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import type { ProxyAnswer, RecordedRequest } from "./recording-proxy.js";

/**
 * What S3 (and MinIO, Ceph...) do with a request body before storing it, for a proxy in front of
 * s3rver 3.7.1, which checks none of it: compare the body with the Content-MD5 and the
 * `x-amz-checksum-crc32` / `-sha256` headers sent with it, and refuse it with 400 BadDigest, as AWS
 * answers, when one does not match. Nothing reaches s3rver then, as nothing is stored by S3.
 */
export function s3DigestCheck(request: RecordedRequest, body: Buffer): Buffer | ProxyAnswer {
  const header = (name: string) => {
    const value = request.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const checks: [string | undefined, () => string, string][] = [
    [
      header("content-md5"),
      () => createHash("md5").update(body).digest("base64"),
      "The Content-MD5 you specified did not match what we received.",
    ],
    [header("x-amz-checksum-crc32"), () => crc32Base64(body), "The CRC32 you specified did not match the calculated checksum."],
    [
      header("x-amz-checksum-sha256"),
      () => createHash("sha256").update(body).digest("base64"),
      "The SHA256 you specified did not match the calculated checksum.",
    ],
  ];
  for (const [sent, compute, message] of checks) {
    if (sent !== undefined && sent !== compute()) return badDigest(message);
  }
  return body;
}

/** The CRC32 of `body` as S3 sends it (`x-amz-checksum-crc32`: big-endian, base64). */
export function crc32Base64(body: Buffer): string {
  const value = Buffer.alloc(4);
  value.writeUInt32BE(crc32(body) >>> 0);
  return value.toString("base64");
}

function badDigest(message: string): ProxyAnswer {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>BadDigest</Code><Message>${message}</Message><RequestId>proxy</RequestId></Error>`;
  return { status: 400, headers: { "content-type": "application/xml" }, body: Buffer.from(xml) };
}

/** A copy of `body` with one bit of its middle byte changed, as a faulty link or memory would. */
export function flipOneByte(body: Buffer): Buffer {
  const copy = Buffer.from(body);
  if (copy.length > 0) copy[copy.length >> 1] ^= 0x01;
  return copy;
}

/** Whether a request sends object data: PutObject or UploadPart (not CopyObject, which has no body). */
export function sendsObjectData(request: RecordedRequest): boolean {
  return request.method === "PUT" && request.headers["x-amz-copy-source"] === undefined && !request.url.includes("tagging");
}
