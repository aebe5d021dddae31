import { createHash } from "node:crypto";
import { createServer as createHttpServer, type ServerResponse } from "node:http";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import type { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3Remote, type S3RemoteOptions } from "../../server/remotes/s3-remote.js";
import { describeRemoteConformance, expectRemoteError } from "./conformance.js";
import { startRecordingProxy, type ProxyHooks, type RecordedRequest } from "./recording-proxy.js";
import { crc32Base64, flipOneByte, s3DigestCheck, sendsObjectData } from "./s3-digest-check.js";
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

// s3rver 3.7.1 ignores If-None-Match on PUT: exclusive create is best effort there (see README.md).
describeRemoteConformance("S3", { exclusiveCreateIsAtomic: false }, async () => {
  const peer = await startS3rver();
  const options = optionsFor(peer, { prefix: "cairn/conformance" });
  return { remote: new S3Remote(options), twin: () => new S3Remote(options), dispose: () => peer.stop() };
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

  it("gives up on a server that stops answering, once idleTimeoutMs pass without a byte, as UNREACHABLE", async () => {
    // Answers HeadBucket; then never answers a HeadObject, and stops a GetObject's body after 10 of its 1000 bytes.
    const stalled: ServerResponse[] = [];
    const requests: string[] = [];
    const server = createHttpServer((request, response) => {
      const path = new URL(request.url ?? "/", "http://s3").pathname;
      requests.push(`${request.method} ${path}`);
      request.resume();
      if (path === `/${peer.bucket}/`) return void response.writeHead(200).end();
      stalled.push(response);
      if (request.method === "GET") {
        response.writeHead(200, { "content-length": "1000", "content-type": "application/octet-stream" });
        response.write(Buffer.alloc(10));
      }
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const remote = new S3Remote({ ...optionsFor(peer), endpoint, idleTimeoutMs: 1000, maxAttempts: 2 });
      await remote.open();
      const silent = await expectRemoteError(remote.stat("claims/x.json"), "UNREACHABLE");
      expect(silent.message).toContain("claims/x.json");
      expect(silent.message).toContain("the server sent nothing for 1000 ms (idleTimeoutMs)");
      expect(silent.message).not.toContain("smithy");
      expect(silent.transient).toBe(true);
      await expectRemoteError(remote.readFile("claims/x.json"), "UNREACHABLE");
      // The silent one was tried maxAttempts times, each attempt abandoned; the SDK does not retry a body that stops (it
      // had its answer), the error is transient for the caller to retry.
      expect(requests.filter((line) => line.startsWith(`HEAD /${peer.bucket}/claims/`))).toHaveLength(2);
      expect(requests.filter((line) => line.startsWith("GET "))).toHaveLength(1);
      await remote.close();
    } finally {
      for (const response of stalled) response.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
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

/** Reads a stream to its end, or to its error. */
async function readToEnd(stream: Readable): Promise<Buffer> {
  return Buffer.concat(await stream.toArray());
}

/** Whether a request is a GET of a whole object (no Range). */
const wholeGet = (request: RecordedRequest) =>
  request.method === "GET" && request.headers.range === undefined && !request.url.includes("list-type");

describe("S3 remote: checksums of the bytes on the way", () => {
  let peer: S3rverPeer;
  beforeAll(async () => {
    peer = await startS3rver();
  });
  afterAll(async () => {
    await peer?.stop();
  });

  /** A remote whose traffic goes through a proxy with `hooks`, closed with the proxy after `run`. */
  async function through(
    hooks: ProxyHooks,
    prefix: string,
    run: (remote: S3Remote, requests: RecordedRequest[]) => Promise<void>,
    extra: Partial<S3RemoteOptions> = {},
  ) {
    const proxy = await startRecordingProxy(peer.endpoint, hooks);
    const remote = new S3Remote({ ...optionsFor(peer), endpoint: proxy.endpoint, prefix, maxAttempts: 1, ...extra });
    try {
      await run(remote, proxy.requests);
    } finally {
      await remote.close();
      await proxy.stop();
    }
  }

  /** The unproxied view of the same bucket, to see what was really stored. */
  const direct = (prefix: string) => new S3Remote(optionsFor(peer, { prefix }));

  it("sends with every PutObject and UploadPart a Content-MD5 of its bytes, which a checking server accepts", async () => {
    // s3rver 3.7.1 checks no digest: the proxy checks them as S3 does, refusing any that does not match.
    await through({ request: s3DigestCheck }, "md5-sent", async (remote, requests) => {
      await remote.writeFile("meta.json", '{"v":1}');
      await remote.writeFile("empty", "");
      const size = 20 * MIB;
      const source = testSource(size);
      expect((await remote.writeStream("disk.vhd", source.stream, { sizeHint: size })).bytes).toBe(size);
      expect(await remote.writeFileExclusive("vm.lock", "owner")).toBe(true);
      const withData = requests.filter(sendsObjectData);
      expect(withData.filter((request) => request.url.includes("partNumber=")).length).toBe(3);
      expect(withData.length).toBe(6);
      for (const request of withData)
        expect(request.headers["content-md5"], `${request.method} ${request.url}`).toMatch(/^[A-Za-z0-9+/]{22}==$/);
      const read = createHash("sha256")
        .update(await direct("md5-sent").readFile("disk.vhd"))
        .digest();
      expect(read.equals(source.digest())).toBe(true);
    });
  });

  it("fails a write whose body was damaged on the way with IO naming the path, and nothing is stored", async () => {
    const damaged = (request: RecordedRequest, body: Buffer) => s3DigestCheck(request, sendsObjectData(request) ? flipOneByte(body) : body);
    await through({ request: damaged }, "damaged-put", async (remote) => {
      for (const write of [
        () => remote.writeFile("meta.json", '{"v":1}'),
        () => remote.writeStream("small.vhd", testSource(MIB).stream),
        () => remote.writeFileExclusive("vm.lock", "owner"),
      ]) {
        const error = await expectRemoteError(write(), "IO");
        expect(error.message).toContain("do not match the checksum");
        expect(error.message).toContain("nothing was stored");
        expect(error.transient).toBe(true);
      }
      const error = await expectRemoteError(remote.writeFile("meta.json", "x"), "IO");
      expect(error.message).toContain('"meta.json"');
      expect(await direct("damaged-put").list("", { recursive: true })).toEqual([]);
    });
  });

  it("aborts a multipart upload one of whose parts was damaged on the way, so nothing appears", async () => {
    const damaged = (request: RecordedRequest, body: Buffer) =>
      s3DigestCheck(request, request.url.includes("partNumber=2") ? flipOneByte(body) : body);
    await through({ request: damaged }, "damaged-part", async (remote, requests) => {
      await remote.writeFile("disk.vhd", "previous");
      const error = await expectRemoteError(remote.writeStream("disk.vhd", testSource(20 * MIB).stream), "IO");
      expect(error.message).toContain('"disk.vhd"');
      expect(error.message).toContain("do not match the checksum");
      expect(requests.filter((request) => request.method === "DELETE" && request.url.includes("uploadId="))).toHaveLength(1);
      expect(requests.filter((request) => request.method === "POST" && request.url.includes("uploadId="))).toHaveLength(0);
      expect((await direct("damaged-part").readFile("disk.vhd")).toString()).toBe("previous");
    });
  });

  it("also sends the SDK's CRC32 when asked (WHEN_SUPPORTED), which catches damage on its own", async () => {
    // The proxy drops the Content-MD5 of the damaged request, so that only the CRC32 can catch it.
    const sent: { md5: boolean; crc32: boolean }[] = [];
    const crcOnly = (request: RecordedRequest, body: Buffer) => {
      if (!sendsObjectData(request)) return body;
      sent.push({ md5: request.headers["content-md5"] !== undefined, crc32: request.headers["x-amz-checksum-crc32"] !== undefined });
      if (!request.url.includes("damaged")) return s3DigestCheck(request, body);
      delete request.headers["content-md5"];
      return s3DigestCheck(request, flipOneByte(body));
    };
    await through(
      { request: crcOnly },
      "crc32",
      async (remote) => {
        await remote.writeFile("meta.json", '{"v":1}');
        await remote.writeStream("disk.vhd", testSource(12 * MIB).stream);
        const error = await expectRemoteError(remote.writeFile("damaged.json", '{"v":1}'), "IO");
        expect(error.message).toContain("CRC32");
        expect(await direct("crc32").list("")).toEqual(["disk.vhd", "meta.json"]);
        expect(sent).toHaveLength(4); // meta.json, two parts, damaged.json
        expect(
          sent.every((headers) => headers.md5 && headers.crc32),
          JSON.stringify(sent),
        ).toBe(true);
      },
      { requestChecksumCalculation: "WHEN_SUPPORTED" },
    );
  });

  it("fails a whole read whose bytes were damaged on the way with an integrity error, instead of ending", async () => {
    const prefix = "damaged-get";
    const small = Buffer.from('{"backup":"metadata"}');
    await direct(prefix).writeFile("meta.json", small);
    await direct(prefix).writeStream("disk.vhd", testSource(12 * MIB).stream); // multipart: s3rver still gives a plain MD5 ETag
    const flipWholeGets: ProxyHooks = {
      response: (request, answer) => {
        if (wholeGet(request) && answer.status === 200) answer.body = flipOneByte(answer.body);
      },
    };
    await through(flipWholeGets, prefix, async (remote) => {
      for (const path of ["meta.json", "disk.vhd"]) {
        const error = await expectRemoteError(readToEnd(await remote.createReadStream(path)), "IO");
        expect(error.message).toContain(`"${path}"`);
        expect(error.message).toContain("the object's bytes do not match its checksum");
        expect(error.transient).toBe(true);
      }
      const error = await expectRemoteError(remote.readFile("meta.json"), "IO");
      expect(error.message).toContain("do not match its checksum");
    });
  });

  it("turns the SDK's check of a stored full-object checksum (AWS, MinIO) into the same integrity error", async () => {
    const prefix = "stored-checksum";
    await direct(prefix).writeFile("meta.json", '{"backup":"metadata"}');
    // As AWS answers a GET with x-amz-checksum-mode: the stored CRC32, and a multipart-style ETag that
    // the remote cannot check itself, so that only the SDK's check of the CRC32 stands.
    const modes: unknown[] = [];
    const storedChecksum = (flip: boolean): ProxyHooks => ({
      response: (request, answer) => {
        if (!wholeGet(request) || answer.status !== 200) return;
        modes.push(request.headers["x-amz-checksum-mode"]);
        answer.headers["x-amz-checksum-crc32"] = crc32Base64(answer.body);
        answer.headers.etag = '"0123456789abcdef0123456789abcdef-2"';
        if (flip) answer.body = flipOneByte(answer.body);
      },
    });
    await through(storedChecksum(false), prefix, async (remote) => {
      expect((await readToEnd(await remote.createReadStream("meta.json"))).toString()).toBe('{"backup":"metadata"}');
      expect((await remote.readFile("meta.json")).toString()).toBe('{"backup":"metadata"}');
    });
    await through(storedChecksum(true), prefix, async (remote) => {
      const streamed = await expectRemoteError(readToEnd(await remote.createReadStream("meta.json")), "IO");
      expect(streamed.message).toContain("the object's bytes do not match its checksum");
      const whole = await expectRemoteError(remote.readFile("meta.json"), "IO");
      expect(whole.message).toContain("the object's bytes do not match its checksum");
    });
    expect(modes).toEqual(["ENABLED", "ENABLED", "ENABLED", "ENABLED"]);
  });
});
