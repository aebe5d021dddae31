import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3Remote, type S3RemoteOptions } from "../../server/remotes/s3-remote.js";
import { describeRemoteConformance, expectRemoteError } from "./conformance.js";
import { startRecordingProxy } from "./recording-proxy.js";
import { startS3rver, type S3rverPeer } from "./s3rver-process.js";
import { testSource } from "./test-source.js";

const MIB = 1024 * 1024;

function optionsFor(peer: S3rverPeer, extra: Partial<S3RemoteOptions> = {}): S3RemoteOptions {
  return {
    endpoint: peer.endpoint,
    bucket: peer.bucket,
    accessKeyId: peer.accessKeyId,
    secretAccessKey: peer.secretAccessKey,
    ...extra,
  };
}

describeRemoteConformance("S3", async () => {
  const peer = await startS3rver();
  return { remote: new S3Remote(optionsFor(peer, { prefix: "cairn/conformance" })), dispose: () => peer.stop() };
});

/** A port on 127.0.0.1 that nothing listens on (taken, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("S3 remote: its server and bucket", () => {
  let peer: S3rverPeer;
  beforeAll(async () => {
    peer = await startS3rver();
  });
  afterAll(async () => {
    await peer?.stop();
  });

  it("says UNREACHABLE, transient, without the secret, when nothing answers at the endpoint", async () => {
    const secret = "do-not-print-this-secret";
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const remote = new S3Remote({ ...optionsFor(peer), endpoint, secretAccessKey: secret, maxAttempts: 1 });
    const error = await expectRemoteError(remote.open(), "UNREACHABLE");
    expect(error.transient).toBe(true);
    expect(error.message).toContain(new URL(endpoint).host);
    expect(error.message).not.toContain(secret);
    expect(JSON.stringify({ ...error, message: error.message })).not.toContain(secret);
    await expectRemoteError(remote.stat("x"), "UNREACHABLE");
  });

  it("says NOT_FOUND with what to do when the bucket does not exist", async () => {
    const error = await expectRemoteError(new S3Remote(optionsFor(peer, { bucket: "no-such-bucket" })).open(), "NOT_FOUND");
    expect(error.message).toContain("create the bucket");
  });

  it("says PERMISSION_DENIED for an unknown access key", async () => {
    const remote = new S3Remote(optionsFor(peer, { accessKeyId: "NOT-A-KEY", secretAccessKey: "nope-nope" }));
    await expectRemoteError(remote.open(), "PERMISSION_DENIED");
  });

  it("keeps remotes with different prefixes of one bucket apart", async () => {
    const first = new S3Remote(optionsFor(peer, { prefix: "site-a" }));
    const second = new S3Remote(optionsFor(peer, { prefix: "site-b/" }));
    await first.writeFile("meta.json", "a");
    await second.writeFile("meta.json", "b");
    expect((await first.readFile("meta.json")).toString()).toBe("a");
    expect(await second.list("", { recursive: true })).toEqual(["meta.json"]);
    await first.deleteTree("deep");
    expect((await second.readFile("meta.json")).toString()).toBe("b");
    await Promise.all([first.close(), second.close()]);
  });

  it("lists and deletes trees larger than one 1000-key listing page", async () => {
    const remote = new S3Remote(optionsFor(peer, { prefix: "paged" }));
    const names = Array.from({ length: 1010 }, (_, index) => `f${String(index).padStart(4, "0")}`);
    for (let index = 0; index < names.length; index += 50) {
      await Promise.all(names.slice(index, index + 50).map((name) => remote.writeFile(`many/${name}`, name)));
    }
    expect(await remote.list("many")).toEqual(names);
    await remote.deleteTree("many");
    expect(await remote.list("many", { recursive: true })).toEqual([]);
    await remote.close();
  });

  it("aborts the multipart upload of a failed write so no part stays stored", async () => {
    const proxy = await startRecordingProxy(peer.endpoint);
    const remote = new S3Remote({ ...optionsFor(peer), endpoint: proxy.endpoint, prefix: "multipart" });
    try {
      const source = testSource(24 * MIB, { failAt: 18 * MIB });
      await expect(remote.writeStream("disk.vhd", source.stream)).rejects.toThrow("failed on purpose");
      const uploads = proxy.requests.filter((entry) => entry.method === "PUT" && entry.url.includes("uploadId="));
      const aborts = proxy.requests.filter((entry) => entry.method === "DELETE" && entry.url.includes("uploadId="));
      const completes = proxy.requests.filter((entry) => entry.method === "POST" && entry.url.includes("uploadId="));
      expect(uploads.length).toBeGreaterThan(0);
      expect(aborts).toHaveLength(1);
      expect(completes).toHaveLength(0);
      await expectRemoteError(remote.stat("disk.vhd"), "NOT_FOUND");
    } finally {
      await remote.close();
      await proxy.stop();
    }
  });
});
