import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A proxy in front of s3rver 3.7.1 that completes it where Cairn needs more than it offers, and checks that what a
 * client sends is well-formed by the S3 API (https://docs.aws.amazon.com/AmazonS3/latest/API/):
 *
 * - UploadPartCopy (s3rver answers NotImplemented): `x-amz-copy-source` (`[/]bucket/key`, URL-encoded) and
 *   `x-amz-copy-source-range` (`bytes=first-last`, both zero-based and inclusive, within the source) are parsed and
 *   checked as S3 does; the range is read from s3rver and stored as the part, and the answer is S3's CopyPartResult.
 * - AbortMultipartUpload (s3rver answers 405): the upload is closed here; later parts and its completion get
 *   NoSuchUpload, as from S3.
 * - CompleteMultipartUpload: refused as S3 refuses it when the parts are not ascending (InvalidPartOrder), name a part
 *   never stored or with another ETag (InvalidPart), number more than 10 000, or one but the last holds under 5 MiB
 *   (EntityTooSmall). s3rver itself checks none of it.
 * - UploadPart: part numbers 1 to 10 000 only.
 *
 * Every refusal is recorded in {@link S3ApiProxy.refusals}, so that a test can require none. It also counts the bytes
 * clients send (PutObject and UploadPart bodies) apart from those the server copies, which is what a merge on S3 must
 * keep proportional to the delta.
 */
export interface S3ApiProxy {
  endpoint: string;
  /** Bytes of object data received from clients: PutObject and UploadPart bodies. */
  readonly uploadedBytes: number;
  /** Bytes stored by UploadPartCopy (server-side: never sent by a client). */
  readonly copiedBytes: number;
  /** Requests seen, by operation name (PutObject, UploadPart, UploadPartCopy, CompleteMultipartUpload...). */
  readonly operations: ReadonlyMap<string, number>;
  /**
   * Every request refused as malformed or against S3's rules (not the 404s of uploads or keys that do not exist):
   * `<operation>: <S3 error code>: <message>`.
   */
  readonly refusals: readonly string[];
  /** Uploads started and neither completed nor aborted. */
  openUploads(): Array<{ uploadId: string; key: string }>;
  /**
   * Failure injection: called before each request is handled; an answer returned is given instead (e.g. a 500 to an
   * AbortMultipartUpload, as when the network drops as a process dies).
   */
  intercept?: (operation: string, url: URL) => { status: number; code: string; message: string } | undefined;
  resetCounters(): void;
  stop(): Promise<void>;
}

const MIB = 1024 * 1024;
const MIN_PART = 5 * MIB;
const MAX_PART = 5 * 1024 * MIB;
const MAX_PARTS = 10_000;

interface Upload {
  key: string;
  state: "open" | "completed" | "aborted";
  parts: Map<number, { size: number; etag: string }>;
}

class S3Refusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function operationOf(method: string, url: URL, headers: IncomingHttpHeaders): string {
  const q = url.searchParams;
  const copy = headers["x-amz-copy-source"] !== undefined;
  if (method === "POST" && q.has("uploads")) return "CreateMultipartUpload";
  if (method === "POST" && q.has("uploadId")) return "CompleteMultipartUpload";
  if (method === "PUT" && q.has("uploadId")) return copy ? "UploadPartCopy" : "UploadPart";
  if (method === "DELETE" && q.has("uploadId")) return "AbortMultipartUpload";
  if (method === "PUT") return copy ? "CopyObject" : "PutObject";
  if (method === "GET") return "GetObject";
  if (method === "HEAD") return "HeadObject";
  if (method === "DELETE") return "DeleteObject";
  return `${method}`;
}

function errorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>s3-api-proxy</RequestId></Error>`;
}

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** `/bucket/key...` of a path-style URL. */
function bucketAndKey(url: URL): { bucket: string; key: string } {
  const [, bucket = "", ...rest] = url.pathname.split("/");
  return { bucket: decodeURIComponent(bucket), key: rest.map(decodeURIComponent).join("/") };
}

/** Starts the proxy on 127.0.0.1 and a free port, in front of s3rver at `target` (an http:// URL, path-style buckets). */
export async function startS3ApiProxy(target: string): Promise<S3ApiProxy> {
  const upstream = new URL(target);
  const uploads = new Map<string, Upload>();
  const operations = new Map<string, number>();
  const refusals: string[] = [];
  let uploadedBytes = 0;
  let copiedBytes = 0;

  /** A request of the proxy's own to s3rver (anonymous: s3rver lets those through), answered whole. */
  const ask = (method: string, path: string, body?: Buffer, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      const sent = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method,
          path,
          headers: { ...headers, ...(body ? { "content-length": String(body.length) } : {}) },
        },
        (answer) => {
          readAll(answer).then((all) => resolve({ status: answer.statusCode ?? 502, headers: answer.headers, body: all }), reject);
        },
      );
      sent.on("error", reject);
      sent.end(body);
    });

  /** Passes a request on, its body streamed (and counted when it is object data); the answer given to `inspect` first. */
  const forward = (
    incoming: IncomingMessage,
    outgoing: ServerResponse,
    options: { body?: Buffer; countBody?: boolean; inspect?: (status: number, headers: IncomingHttpHeaders, body: Buffer) => void } = {},
  ) =>
    new Promise<void>((resolve) => {
      const sent = request(
        { host: upstream.hostname, port: upstream.port, method: incoming.method, path: incoming.url, headers: incoming.headers },
        (answer) => {
          if (!options.inspect) {
            outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(outgoing);
            answer.on("end", resolve);
            // s3rver's answer cut short: the client must see its answer cut too, not wait for the rest of it.
            answer.on("error", () => {
              outgoing.destroy();
              resolve();
            });
            return;
          }
          void readAll(answer).then(
            (body) => {
              options.inspect?.(answer.statusCode ?? 502, answer.headers, body);
              outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
              outgoing.end(body);
              resolve();
            },
            () => {
              outgoing.destroy();
              resolve();
            },
          );
        },
      );
      sent.on("error", () => {
        outgoing.destroy();
        resolve();
      });
      if (options.body !== undefined) {
        if (options.countBody) uploadedBytes += options.body.length;
        sent.end(options.body);
        return;
      }
      if (options.countBody) incoming.on("data", (chunk: Buffer) => (uploadedBytes += chunk.length));
      incoming.pipe(sent);
    });

  const openUpload = (url: URL): Upload => {
    const uploadId = url.searchParams.get("uploadId") ?? "";
    const upload = uploads.get(uploadId);
    if (!upload || upload.state !== "open") {
      throw new S3Refusal(
        404,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
      );
    }
    if (upload.key !== bucketAndKey(url).key) throw new S3Refusal(404, "NoSuchUpload", "The upload ID belongs to another key.");
    return upload;
  };

  const partNumberOf = (url: URL): number => {
    const text = url.searchParams.get("partNumber") ?? "";
    const number = Number(text);
    if (!/^\d+$/.test(text) || number < 1 || number > MAX_PARTS) {
      throw new S3Refusal(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive");
    }
    return number;
  };

  const uploadPartCopy = async (url: URL, headers: IncomingHttpHeaders, outgoing: ServerResponse) => {
    const upload = openUpload(url);
    const number = partNumberOf(url);
    const sourceHeader = String(headers["x-amz-copy-source"]);
    if (sourceHeader.includes("?")) throw new S3Refusal(400, "InvalidArgument", "Copy Source versions are not supported by this peer");
    const decoded = decodeURIComponent(sourceHeader).replace(/^\//, "");
    const slash = decoded.indexOf("/");
    if (slash <= 0 || slash === decoded.length - 1) {
      throw new S3Refusal(400, "InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey");
    }
    const sourcePath = `/${decoded.slice(0, slash)}/${decoded
      .slice(slash + 1)
      .split("/")
      .map(encodeURIComponent)
      .join("/")}`;
    const head = await ask("HEAD", sourcePath);
    if (head.status === 404) throw new S3Refusal(404, "NoSuchKey", "The specified key does not exist.");
    if (head.status !== 200) throw new S3Refusal(500, "InternalError", `HEAD of the copy source answered ${head.status}`);
    const sourceSize = Number(head.headers["content-length"]);
    const rangeHeader = headers["x-amz-copy-source-range"];
    let first = 0;
    let last = sourceSize - 1;
    if (rangeHeader !== undefined) {
      const match = /^bytes=(\d+)-(\d+)$/.exec(String(rangeHeader));
      if (!match) {
        throw new S3Refusal(
          400,
          "InvalidArgument",
          "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        );
      }
      first = Number(match[1]);
      last = Number(match[2]);
      if (first > last || last >= sourceSize) {
        throw new S3Refusal(400, "InvalidArgument", `Range specified is not valid for source object of size: ${sourceSize}`);
      }
    }
    const size = last - first + 1;
    if (size > MAX_PART)
      throw new S3Refusal(
        400,
        "InvalidRequest",
        "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120",
      );
    const range = await ask("GET", sourcePath, undefined, { range: `bytes=${first}-${last}` });
    if (range.status !== 206 && range.status !== 200)
      throw new S3Refusal(500, "InternalError", `GET of the copy source answered ${range.status}`);
    if (range.body.length !== size)
      throw new S3Refusal(500, "InternalError", `the copy source gave ${range.body.length} bytes, ${size} asked`);
    const stored = await ask("PUT", `${url.pathname}${url.search}`, range.body);
    if (stored.status !== 200) throw new S3Refusal(500, "InternalError", `storing the part answered ${stored.status}: ${stored.body}`);
    const etag = String(stored.headers.etag ?? "");
    upload.parts.set(number, { size, etag: etag.replace(/"/g, "") });
    copiedBytes += size;
    const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<CopyPartResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LastModified>${new Date().toISOString()}</LastModified><ETag>${etag}</ETag></CopyPartResult>`;
    outgoing.writeHead(200, { "content-type": "application/xml" });
    outgoing.end(xml);
  };

  const checkCompletion = (upload: Upload, body: Buffer) => {
    const listed = [...body.toString("utf8").matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((match) => ({
      number: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(match[1])?.[1]),
      etag: (/<ETag>([\s\S]*?)<\/ETag>/.exec(match[1])?.[1] ?? "").replace(/&quot;|"/g, ""),
    }));
    if (listed.length === 0)
      throw new S3Refusal(
        400,
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema.",
      );
    if (listed.length > MAX_PARTS)
      throw new S3Refusal(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive");
    for (let i = 1; i < listed.length; i++) {
      if (listed[i].number <= listed[i - 1].number) {
        throw new S3Refusal(400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number.");
      }
    }
    for (let i = 0; i < listed.length; i++) {
      const stored = upload.parts.get(listed[i].number);
      if (!stored || stored.etag !== listed[i].etag) {
        throw new S3Refusal(
          400,
          "InvalidPart",
          "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not have matched the part's entity tag.",
        );
      }
      if (i < listed.length - 1 && stored.size < MIN_PART) {
        throw new S3Refusal(
          400,
          "EntityTooSmall",
          `Your proposed upload is smaller than the minimum allowed size (part ${listed[i].number} holds ${stored.size} bytes)`,
        );
      }
    }
  };

  const handle = async (incoming: IncomingMessage, outgoing: ServerResponse, operation: string, url: URL) => {
    const injected = proxy.intercept?.(operation, url);
    if (injected) {
      await readAll(incoming);
      outgoing.writeHead(injected.status, { "content-type": "application/xml" });
      outgoing.end(errorXml(injected.code, injected.message));
      return;
    }
    switch (operation) {
      case "CreateMultipartUpload":
        return forward(incoming, outgoing, {
          inspect: (status, _headers, body) => {
            const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(body.toString("utf8"))?.[1];
            if (status === 200 && uploadId) uploads.set(uploadId, { key: bucketAndKey(url).key, state: "open", parts: new Map() });
          },
        });
      case "UploadPart": {
        const upload = openUpload(url);
        const number = partNumberOf(url);
        const body = await readAll(incoming);
        return forward(incoming, outgoing, {
          body,
          countBody: true,
          inspect: (status, headers) => {
            if (status === 200) upload.parts.set(number, { size: body.length, etag: String(headers.etag ?? "").replace(/"/g, "") });
          },
        });
      }
      case "UploadPartCopy":
        await readAll(incoming);
        return uploadPartCopy(url, incoming.headers, outgoing);
      case "AbortMultipartUpload": {
        await readAll(incoming);
        openUpload(url).state = "aborted";
        outgoing.writeHead(204);
        outgoing.end();
        return;
      }
      case "CompleteMultipartUpload": {
        const upload = openUpload(url);
        const body = await readAll(incoming);
        checkCompletion(upload, body);
        return forward(incoming, outgoing, {
          body,
          inspect: (status, _headers, answer) => {
            if (status === 200 && !answer.toString("utf8").includes("<Error>")) upload.state = "completed";
          },
        });
      }
      case "PutObject":
        return forward(incoming, outgoing, { countBody: true });
      default:
        return forward(incoming, outgoing);
    }
  };

  const server: Server = createServer((incoming, outgoing) => {
    const url = new URL(incoming.url ?? "/", "http://proxy");
    const operation = operationOf(incoming.method ?? "", url, incoming.headers);
    operations.set(operation, (operations.get(operation) ?? 0) + 1);
    handle(incoming, outgoing, operation, url).catch((error: unknown) => {
      const refusal = error instanceof S3Refusal ? error : new S3Refusal(500, "InternalError", String(error));
      // A missing upload or key is a state of the bucket, not a malformed request.
      if (refusal.status !== 404) refusals.push(`${operation}: ${refusal.code}: ${refusal.message}`);
      if (outgoing.headersSent) {
        outgoing.destroy();
        return;
      }
      incoming.resume();
      outgoing.writeHead(refusal.status, { "content-type": "application/xml" });
      outgoing.end(errorXml(refusal.code, refusal.message));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  const proxy: S3ApiProxy = {
    endpoint: `http://127.0.0.1:${port}`,
    get uploadedBytes() {
      return uploadedBytes;
    },
    get copiedBytes() {
      return copiedBytes;
    },
    operations,
    refusals,
    openUploads: () =>
      [...uploads].filter(([, upload]) => upload.state === "open").map(([uploadId, upload]) => ({ uploadId, key: upload.key })),
    resetCounters() {
      uploadedBytes = 0;
      copiedBytes = 0;
      operations.clear();
      refusals.length = 0;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return proxy;
}
