import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ComposePart } from "../../server/remotes/s3-compose.js";
import { S3Remote } from "../../server/remotes/s3-remote.js";
import { expectRemoteError } from "./conformance.js";
import { startS3rver, type S3rverPeer } from "./s3rver-process.js";

const MIB = 1024 * 1024;

describe("S3 remote: objects composed server-side (composeObject)", () => {
  let peer: S3rverPeer;
  let remote: S3Remote;
  let client: S3Client;
  const source = randomBytes(13 * MIB);

  beforeAll(async () => {
    peer = await startS3rver();
    remote = new S3Remote({ endpoint: peer.endpoint, bucket: peer.bucket, accessKeyId: "S3RVER", secretAccessKey: "S3RVER", prefix: "c" });
    client = new S3Client({
      endpoint: peer.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
    await remote.writeFile("source.bin", source);
  });
  afterAll(async () => {
    client?.destroy();
    await remote?.close();
    await peer?.stop();
  });
  beforeEach(() => peer.api.resetCounters());

  it("assembles copies of ranges and sent bytes, in order; only the sent bytes cross the network", async () => {
    const fresh = randomBytes(5 * MIB + 3);
    const parts: ComposePart[] = [
      { kind: "copy", from: "source.bin", start: 0, end: 6 * MIB - 1 },
      { kind: "bytes", data: fresh },
      { kind: "copy", from: "source.bin", start: 7 * MIB, end: 13 * MIB - 1 },
      { kind: "stream", length: 100, open: () => Readable.from([source.subarray(0, 60), source.subarray(60, 100)]) },
    ];
    const result = await remote.composeObject("out/composed.bin", parts);
    const expected = Buffer.concat([source.subarray(0, 6 * MIB), fresh, source.subarray(7 * MIB), source.subarray(0, 100)]);
    expect(result).toEqual({ bytes: expected.length, uploadedBytes: fresh.length + 100, copiedBytes: 12 * MIB, parts: 4 });
    expect((await remote.readFile("out/composed.bin")).equals(expected)).toBe(true);
    expect(peer.api.uploadedBytes).toBe(fresh.length + 100);
    expect(peer.api.copiedBytes).toBe(12 * MIB);
    expect(peer.api.operations.get("UploadPartCopy")).toBe(2);
    expect(peer.api.refusals).toEqual([]);
    expect(peer.api.openUploads()).toEqual([]);
  });

  it("refuses a part under 5 MiB that is not the last before sending it: the upload is aborted, nothing appears", async () => {
    const error = await expectRemoteError(
      remote.composeObject("out/small.bin", [
        { kind: "copy", from: "source.bin", start: 0, end: MIB - 1 },
        { kind: "bytes", data: Buffer.alloc(10) },
      ]),
      "INVALID_ARGUMENT",
    );
    expect(error.message).toContain("only the last part may be under 5 MiB");
    expect(await remote.list("out")).not.toContain("small.bin");
    expect(peer.api.openUploads()).toEqual([]);
    expect(peer.api.operations.get("AbortMultipartUpload")).toBe(1);
  });

  it("aborts the upload when a part's source fails, passes that error on and leaves the existing object as it was", async () => {
    await remote.writeFile("out/kept.bin", "old");
    const failing = async function* (): AsyncGenerator<ComposePart> {
      yield { kind: "copy", from: "source.bin", start: 0, end: 5 * MIB - 1 };
      throw new Error("the source broke");
    };
    await expect(remote.composeObject("out/kept.bin", failing())).rejects.toThrow("the source broke");
    expect((await remote.readFile("out/kept.bin")).toString()).toBe("old");
    expect(peer.api.openUploads()).toEqual([]);
  });

  it("calls onUploadStarted before any part and beforeComplete before the object is replaced; a throw there aborts", async () => {
    const seen: string[] = [];
    await expect(
      remote.composeObject("out/kept.bin", [{ kind: "bytes", data: Buffer.from("new") }], {
        onUploadStarted: (id) => void seen.push(`started ${id.length > 0}`),
        beforeComplete: () => {
          seen.push(`parts ${peer.api.operations.get("UploadPart")}`);
          throw new Error("stop here");
        },
      }),
    ).rejects.toThrow("stop here");
    expect(seen).toEqual(["started true", "parts 1"]);
    expect((await remote.readFile("out/kept.bin")).toString()).toBe("old");
    expect(peer.api.openUploads()).toEqual([]);
  });

  it("abortComposition aborts an upload left open, and succeeds for one already gone", async () => {
    let uploadId = "";
    peer.api.intercept = (operation) =>
      operation === "AbortMultipartUpload" ? { status: 500, code: "InternalError", message: "injected" } : undefined;
    try {
      await expect(
        remote.composeObject("out/left.bin", [{ kind: "bytes", data: Buffer.from("x") }], {
          onUploadStarted: (id) => void (uploadId = id),
          beforeComplete: () => {
            throw new Error("killed");
          },
        }),
      ).rejects.toThrow("killed");
    } finally {
      peer.api.intercept = undefined;
    }
    expect(peer.api.openUploads()).toEqual([{ uploadId, key: "c/out/left.bin" }]);
    await remote.abortComposition("out/left.bin", uploadId);
    expect(peer.api.openUploads()).toEqual([]);
    await remote.abortComposition("out/left.bin", uploadId);
    expect(await remote.list("out")).not.toContain("left.bin");
  });

  it("the peer refuses what S3 refuses: malformed copy ranges, ranges past the source, small parts, parts out of order", async () => {
    const Bucket = peer.bucket;
    const Key = "raw/target.bin";
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key }));
    const copy = (range: string, PartNumber = 1) =>
      client.send(
        new UploadPartCopyCommand({ Bucket, Key, UploadId, PartNumber, CopySource: `${Bucket}/c/source.bin`, CopySourceRange: range }),
      );
    await expect(copy("bytes=5-")).rejects.toMatchObject({ name: "InvalidArgument" });
    await expect(copy("bytes=10-5")).rejects.toMatchObject({ name: "InvalidArgument" });
    await expect(copy(`bytes=0-${source.length}`)).rejects.toMatchObject({ name: "InvalidArgument" });
    await expect(copy("bytes=0-9", 10_001)).rejects.toMatchObject({ name: "InvalidArgument" });
    const first = await copy(`bytes=0-${MIB - 1}`, 1);
    const second = await client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 2, Body: Buffer.from("tail") }));
    const complete = (Parts: Array<{ PartNumber: number; ETag?: string }>) =>
      client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts } }));
    await expect(
      complete([
        { PartNumber: 2, ETag: second.ETag },
        { PartNumber: 1, ETag: first.CopyPartResult?.ETag },
      ]),
    ).rejects.toMatchObject({ name: "InvalidPartOrder" });
    await expect(complete([{ PartNumber: 1, ETag: '"0123"' }])).rejects.toMatchObject({ name: "InvalidPart" });
    await expect(
      complete([
        { PartNumber: 1, ETag: first.CopyPartResult?.ETag },
        { PartNumber: 2, ETag: second.ETag },
      ]),
    ).rejects.toMatchObject({ name: "EntityTooSmall" });
    expect(peer.api.refusals.map((line) => line.split(":")[1].trim())).toEqual([
      "InvalidArgument",
      "InvalidArgument",
      "InvalidArgument",
      "InvalidArgument",
      "InvalidPartOrder",
      "InvalidPart",
      "EntityTooSmall",
    ]);
  });
});
