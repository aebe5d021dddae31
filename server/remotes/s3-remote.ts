import type { CompletedPart, ListObjectsV2CommandOutput, S3Client } from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { messageOf } from "../errors.js";
import { checkByteRange, checkReadWindow, closedHandleError } from "./remote-arguments.js";
import { RemoteError } from "./remote-error.js";
import { checkRemotePath, isTemporaryName, joinRemotePath } from "./remote-path.js";
import type { ByteRange, FileStat, RandomAccessFile, Remote, SpaceInfo, WriteStreamOptions } from "./remote.js";
import {
  type ComposableRemote,
  type ComposeOptions,
  type ComposePart,
  type ComposeResult,
  S3_MAX_PARTS,
  S3_MAX_PART_SIZE,
  S3_MIN_PART_SIZE,
} from "./s3-compose.js";
import { classifyS3Error, fromS3Error } from "./s3-error.js";
import { addContentMd5, expectedMd5Of, isSdkChecksumMismatch, md5MismatchDetail, objectIntegrityError, verifyMd5 } from "./s3-integrity.js";
import { translateStreamErrors, watchSourceErrors, writeAbortError } from "./stream-errors.js";
import { takeBytes } from "./take-bytes.js";

/**
 * The AWS SDK, loaded on the first open of an S3 remote rather than with the server: it is the largest dependency Cairn has
 * (tens of MB of heap once loaded), and a server without S3 remotes never needs it.
 */
type AwsSdk = typeof import("@aws-sdk/client-s3") & { Upload: typeof import("@aws-sdk/lib-storage").Upload };
let awsSdk: AwsSdk | undefined;
let loadingAwsSdk: Promise<AwsSdk> | undefined;

function loadAwsSdk(): Promise<AwsSdk> {
  loadingAwsSdk ??= Promise.all([import("@aws-sdk/client-s3"), import("@aws-sdk/lib-storage")]).then(([s3, storage]) => {
    awsSdk = { ...s3, Upload: storage.Upload };
    return awsSdk;
  });
  return loadingAwsSdk;
}

/** The SDK once an S3 remote has been opened (every operation opens first). */
function aws(): AwsSdk {
  if (awsSdk === undefined) throw new Error("S3Remote: the AWS SDK is used before the remote was opened (a bug)");
  return awsSdk;
}

/** How a {@link S3Remote} reaches its bucket. */
export interface S3RemoteOptions {
  /** The bucket; it must exist (Cairn does not create buckets). */
  bucket: string;
  /** A folder inside the bucket holding everything of this remote, without leading or trailing "/". @default "" */
  prefix?: string;
  /** The service URL for S3-compatible storage, e.g. `https://s3.example.net:9000`. @default AWS for `region` */
  endpoint?: string;
  /** @default "us-east-1" */
  region?: string;
  /** Path-style URLs (`host/bucket/key`), which most S3-compatible servers need. @default true when `endpoint` is set */
  forcePathStyle?: boolean;
  accessKeyId: string;
  secretAccessKey: string;
  /** Multipart part size; parts are held in memory, `queueSize` at a time. Grown from `sizeHint` when needed. @default 8 MiB */
  partSizeBytes?: number;
  /** Parts uploaded in parallel per write. @default 2 */
  queueSize?: number;
  /** Attempts per request, the SDK's own retries included. @default 3 */
  maxAttempts?: number;
  /** Time allowed to open a connection, in ms. @default 10 000 */
  connectionTimeoutMs?: number;
  /**
   * Time a request may go with no byte moving either way, in ms; the request is then abandoned as UNREACHABLE (and
   * retried while `maxAttempts` allows). Without it, a server that stops answering on an open connection holds the
   * operation (a backup, a lock's renewal) forever. Long enough for a server-side copy of a 5 GiB part on a slow
   * server that sends nothing meanwhile. @default 300 000
   */
  idleTimeoutMs?: number;
  /**
   * `WHEN_SUPPORTED` adds the SDK's CRC32 (`x-amz-checksum-crc32`, which AWS and MinIO check and store)
   * to every PutObject and UploadPart, on top of the Content-MD5 always sent. `WHEN_REQUIRED` suits
   * S3-compatible servers that reject those newer headers. @default "WHEN_REQUIRED"
   */
  requestChecksumCalculation?: "WHEN_SUPPORTED" | "WHEN_REQUIRED";
}

const MIB = 1024 * 1024;
const MIN_PART_SIZE = 5 * MIB;
const MAX_PARTS = 10_000;
/** The largest object a single CopyObject can copy. */
const MAX_COPY_SIZE = 5 * 1024 * MIB;

/**
 * A remote in an S3 bucket (AWS or compatible). Keys are `prefix/path`. Writes are atomic by S3's own
 * rule: an object appears only when its PutObject or CompleteMultipartUpload succeeds, and a failed
 * or aborted multipart upload is aborted so no part is left billed. No temporary names are used.
 * Every request carrying data has a Content-MD5 the server checks, and whole reads are checked
 * against the object's checksum where the server gives one (`s3-integrity.ts`).
 * Folders do not exist: `mkdir` only validates, and an empty "folder" is never listed.
 */
export class S3Remote implements Remote, ComposableRemote {
  readonly kind = "S3" as const;
  readonly name: string;
  private readonly options: S3RemoteOptions;
  private readonly prefix: string;
  private client: S3Client | undefined;
  private opening: Promise<void> | undefined;
  immutabilityDays = 0;

  constructor(options: S3RemoteOptions) {
    this.options = options;
    this.prefix = (options.prefix ?? "").replace(/^\/+|\/+$/g, "");
    let host = "AWS";
    if (options.endpoint !== undefined) {
      try {
        host = new URL(options.endpoint).host; // never the userinfo part of the URL
      } catch {
        host = "(invalid endpoint)"; // reported by open(); the name must not carry the raw string
      }
    }
    this.name = `S3 remote "${joinRemotePath(host, options.bucket, this.prefix)}"`;
  }

  private get secrets(): string[] {
    return [this.options.secretAccessKey];
  }

  private fail(error: unknown, operation: string, path?: string): RemoteError {
    return fromS3Error(error, { remote: this.name, operation, path, secrets: this.secrets });
  }

  private key(path: string): string {
    return joinRemotePath(this.prefix, path);
  }

  private check(path: string, operation: string, allowRoot = false): string {
    return checkRemotePath(path, { remote: this.name, operation, allowRoot });
  }

  open(): Promise<void> {
    this.opening ??= this.connect().catch((error: unknown) => {
      this.opening = undefined;
      this.client?.destroy();
      this.client = undefined;
      throw error;
    });
    return this.opening;
  }

  private async connect(): Promise<void> {
    const options = this.options;
    const { S3Client } = await loadAwsSdk();
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region ?? "us-east-1",
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
      maxAttempts: options.maxAttempts ?? 3,
      requestChecksumCalculation: options.requestChecksumCalculation ?? "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: { connectionTimeout: options.connectionTimeoutMs ?? 10_000, socketTimeout: options.idleTimeoutMs ?? 300_000 },
    });
    addContentMd5(this.client);
    await this.client.send(new (aws().HeadBucketCommand)({ Bucket: options.bucket })).catch((error: unknown) => {
      // HeadBucket has no body, so a missing bucket is a bare 404 named "NotFound".
      const missing = classifyS3Error(error).code === "NOT_FOUND";
      throw fromS3Error(error, {
        remote: this.name,
        operation: "open",
        hint: missing ? "create the bucket or fix the bucket name" : undefined,
        secrets: this.secrets,
      });
    });
  }

  /** The client, opening first when needed. */
  private async connected(): Promise<S3Client> {
    await this.open();
    if (this.client === undefined) throw new Error("S3Remote: client missing after open (a bug)");
    return this.client;
  }

  async close(): Promise<void> {
    this.opening = undefined;
    this.client?.destroy();
    this.client = undefined;
  }

  async createReadStream(path: string, range?: ByteRange): Promise<Readable> {
    const file = this.check(path, "read");
    const { start, end } = checkByteRange(range, { remote: this.name, path: file });
    const client = await this.connected();
    const whole = start === 0 && end === undefined;
    // No Range header for a whole read: S3 answers 416 to "bytes=0-" on an empty object.
    const header = whole ? undefined : `bytes=${start}-${end ?? ""}`;
    const where = { remote: this.name, path: file };
    try {
      const output = await client.send(
        // ChecksumMode: the SDK then checks a full-object checksum the server stored (AWS, MinIO), if any.
        new (aws().GetObjectCommand)({
          Bucket: this.options.bucket,
          Key: this.key(file),
          Range: header,
          ChecksumMode: whole ? "ENABLED" : undefined,
        }),
      );
      const body = output.Body as Readable;
      const expected = whole ? expectedMd5Of(output) : undefined;
      const checked = expected === undefined ? body : verifyMd5(body, expected, (detail) => objectIntegrityError(where, detail));
      const bounded = end === undefined ? checked : takeBytes(checked, end - start + 1);
      return translateStreamErrors(bounded, (error) =>
        isSdkChecksumMismatch(error) ? objectIntegrityError(where, messageOf(error), error) : this.fail(error, "read", file),
      );
    } catch (error) {
      // The object exists (a missing key is NoSuchKey) but starts before `start`: an empty range.
      if (classifyS3Error(error).status === 416) return Readable.from([]);
      throw this.fail(error, "read", file);
    }
  }

  async writeStream(path: string, source: Readable, options: WriteStreamOptions = {}): Promise<{ bytes: number }> {
    const file = this.check(path, "write");
    const sourceErrors = watchSourceErrors(source);
    let bytes = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        callback(null, chunk);
      },
    });
    // An abort destroys the body rather than calling Upload.abort(), which settles done() at once while
    // parts may still be on their way. A failing body makes done() wait for every part in flight.
    const abortError = () => writeAbortError(options.signal);
    const onAbort = () => counter.destroy(abortError());
    // When a part fails, lib-storage stops reading the body; the pipeline then destroys the source
    // with an AbortError of its own making. Only an error the source raised before that is its own.
    let bodyDroppedFirst = false;
    counter.once("close", () => {
      if (sourceErrors.error === undefined) bodyDroppedFirst = true;
    });
    let upload: InstanceType<AwsSdk["Upload"]> | undefined;
    let client: S3Client | undefined;
    try {
      options.signal?.throwIfAborted();
      client = await this.connected();
      options.signal?.addEventListener("abort", onAbort, { once: true });
      upload = new (aws().Upload)({
        client,
        params: { Bucket: this.options.bucket, Key: this.key(file), Body: counter },
        partSize: this.partSize(options.sizeHint),
        queueSize: this.options.queueSize ?? 2,
        // Parts are aborted below, not by lib-storage: when its abort fails, it throws that error in
        // place of the one that made the write fail (a refused part, a lost connection...).
        leavePartsOnError: true,
      });
      const feeding = pipeline(source, counter).catch(() => undefined); // its error reaches us through upload.done()
      await upload.done();
      await feeding;
      return { bytes };
    } catch (error) {
      source.destroy();
      counter.destroy();
      // done() has settled: no part is in flight. An upload we cannot abort keeps its parts until the
      // bucket's lifecycle rule removes them; the write's own error is what the caller must see.
      if (upload?.uploadId !== undefined) {
        const abort = new (aws().AbortMultipartUploadCommand)({
          Bucket: this.options.bucket,
          Key: this.key(file),
          UploadId: upload.uploadId,
        });
        await client?.send(abort).catch(() => undefined);
      }
      if (options.signal?.aborted === true) throw (error as Error).name === "AbortError" ? error : abortError();
      if (sourceErrors.failed(error)) throw error;
      if (sourceErrors.error !== undefined && !bodyDroppedFirst) throw sourceErrors.error;
      throw this.fail(error, "write", file);
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  private partSize(sizeHint: number | undefined): number {
    const wanted = Math.max(MIN_PART_SIZE, this.options.partSizeBytes ?? 8 * MIB);
    if (sizeHint === undefined || !Number.isFinite(sizeHint)) return wanted;
    return Math.max(wanted, Math.ceil(sizeHint / (MAX_PARTS - 1) / MIB) * MIB);
  }

  async writeFile(path: string, data: Uint8Array | string): Promise<void> {
    const file = this.check(path, "write");
    const client = await this.connected();
    const body = typeof data === "string" ? Buffer.from(data) : data;
    await client
      .send(new (aws().PutObjectCommand)({ Bucket: this.options.bucket, Key: this.key(file), Body: body }))
      .catch((error: unknown) => {
        throw this.fail(error, "write", file);
      });
  }

  /**
   * PutObject with `If-None-Match: *`, which the server refuses (412) when the key exists. Servers
   * that ignore the header (s3rver, older ones) would overwrite: a HEAD first answers `false` for a
   * key that exists, but cannot stop two concurrent callers both getting `true` there (see the TSDoc
   * of {@link Remote.writeFileExclusive}).
   */
  async writeFileExclusive(path: string, data: Uint8Array | string): Promise<boolean> {
    const file = this.check(path, "create");
    const client = await this.connected();
    const body = typeof data === "string" ? Buffer.from(data) : data;
    try {
      const exists = await client.send(new (aws().HeadObjectCommand)({ Bucket: this.options.bucket, Key: this.key(file) })).then(
        () => true,
        (error: unknown) => {
          if (classifyS3Error(error).code === "NOT_FOUND") return false;
          throw error;
        },
      );
      if (exists) return false;
      await client.send(new (aws().PutObjectCommand)({ Bucket: this.options.bucket, Key: this.key(file), Body: body, IfNoneMatch: "*" }));
      return true;
    } catch (error) {
      const status = classifyS3Error(error).status;
      if (status === 412) return false;
      if (status === 409) {
        // AWS: another conditional write of this key is in progress; its outcome decides.
        throw new RemoteError({
          code: "IO",
          transient: true,
          remote: this.name,
          operation: "create",
          path: file,
          detail: "another write of this name is in progress",
          hint: "retry in a moment",
          cause: error,
        });
      }
      throw this.fail(error, "create", file);
    }
  }

  async readFile(path: string): Promise<Buffer> {
    const file = this.check(path, "read");
    const client = await this.connected();
    const where = { remote: this.name, path: file };
    let bytes: Buffer;
    let expected: string | undefined;
    try {
      const output = await client.send(
        new (aws().GetObjectCommand)({ Bucket: this.options.bucket, Key: this.key(file), ChecksumMode: "ENABLED" }),
      );
      expected = expectedMd5Of(output);
      bytes = output.Body === undefined ? Buffer.alloc(0) : Buffer.from(await output.Body.transformToByteArray());
    } catch (error) {
      if (isSdkChecksumMismatch(error)) throw objectIntegrityError(where, messageOf(error), error);
      throw this.fail(error, "read", file);
    }
    if (expected !== undefined) {
      const actual = createHash("md5").update(bytes).digest("hex");
      if (actual !== expected) throw objectIntegrityError(where, md5MismatchDetail(expected, actual));
    }
    return bytes;
  }

  async list(dir: string, options: { recursive?: boolean } = {}): Promise<string[]> {
    const folder = this.check(dir, "list", true);
    const recursive = options.recursive === true;
    const names: string[] = [];
    const keyPrefix = this.key(folder) === "" ? "" : `${this.key(folder)}/`;
    for await (const page of this.pages(keyPrefix, recursive ? undefined : "/", folder)) {
      for (const object of page.Contents ?? []) {
        const name = (object.Key ?? "").slice(keyPrefix.length);
        if (name !== "" && !name.endsWith("/")) names.push(name); // "dir/" markers made by consoles are not files
      }
      for (const common of page.CommonPrefixes ?? []) {
        const name = (common.Prefix ?? "").slice(keyPrefix.length).replace(/\/$/, "");
        if (name !== "") names.push(name);
      }
    }
    return names.sort();
  }

  /** Every page of a listing under `keyPrefix`, following continuation tokens. */
  private async *pages(keyPrefix: string, delimiter: string | undefined, path: string): AsyncGenerator<ListObjectsV2CommandOutput> {
    const client = await this.connected();
    let token: string | undefined;
    do {
      const page = await client
        .send(
          new (aws().ListObjectsV2Command)({
            Bucket: this.options.bucket,
            Prefix: keyPrefix,
            Delimiter: delimiter,
            ContinuationToken: token,
          }),
        )
        .catch((error: unknown) => {
          throw this.fail(error, "list", path);
        });
      yield page;
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async stat(path: string): Promise<FileStat> {
    const file = this.check(path, "stat");
    const client = await this.connected();
    const output = await client
      .send(new (aws().HeadObjectCommand)({ Bucket: this.options.bucket, Key: this.key(file) }))
      .catch((error: unknown) => {
        throw this.fail(error, "stat", file);
      });
    return { size: output.ContentLength ?? 0, mtime: output.LastModified ?? new Date(0) };
  }

  async rename(from: string, to: string): Promise<void> {
    const source = this.check(from, "rename");
    const target = this.check(to, "rename");
    const { size } = await this.stat(source);
    const where = `${source}" to "${target}`;
    if (size > MAX_COPY_SIZE) {
      throw new RemoteError({
        code: "INVALID_ARGUMENT",
        remote: this.name,
        operation: "rename",
        path: where,
        detail: `S3 copies at most 5 GiB in one request and this object is ${size} bytes`,
        hint: "write the object under its final name instead (S3 writes are atomic)",
      });
    }
    const client = await this.connected();
    const copySource = `${this.options.bucket}/${this.key(source).split("/").map(encodeURIComponent).join("/")}`;
    try {
      await client.send(new (aws().CopyObjectCommand)({ Bucket: this.options.bucket, Key: this.key(target), CopySource: copySource }));
    } catch (error) {
      throw this.fail(error, "rename", where);
    }
    if (this.immutabilityDays > 0) return this.deleteVersions(this.key(source), where, (key) => key === this.key(source));
    await client.send(new (aws().DeleteObjectCommand)({ Bucket: this.options.bucket, Key: this.key(source) })).catch((error: unknown) => {
      throw this.fail(error, "rename", where);
    });
  }

  /** Object Lock must be on for the bucket (it can only be turned on when the bucket is created, or by AWS support). */
  async checkImmutability(): Promise<void> {
    const client = await this.connected();
    const bucket = this.options.bucket;
    const refusal = (detail: string) =>
      new RemoteError({
        code: "INVALID_CONFIG",
        remote: this.name,
        operation: "make objects immutable on",
        detail,
        field: "immutabilityDays",
        hint: "use a bucket created with Object Lock on, or set the window to 0",
      });
    const answer = await client.send(new (aws().GetObjectLockConfigurationCommand)({ Bucket: bucket })).catch((error: unknown) => {
      const { status, code } = classifyS3Error(error);
      // No configuration (ObjectLockConfigurationNotFoundError, 404) and servers without the API (501, 405) alike: no lock.
      if (code === "NOT_FOUND" || status === 404 || status === 405 || status === 501 || status === 400) return undefined;
      throw this.fail(error, "read the Object Lock configuration of");
    });
    if (answer?.ObjectLockConfiguration?.ObjectLockEnabled !== "Enabled") {
      throw refusal(`the bucket ${bucket} does not have Object Lock enabled: create it with Object Lock on`);
    }
  }

  /** Object Lock retention in COMPLIANCE mode on the object's current version: nobody can delete or shorten it until then. */
  async protect(path: string, until: Date): Promise<void> {
    const file = this.check(path, "protect");
    const client = await this.connected();
    await client
      .send(
        new (aws().PutObjectRetentionCommand)({
          Bucket: this.options.bucket,
          Key: this.key(file),
          Retention: { Mode: "COMPLIANCE", RetainUntilDate: until },
        }),
      )
      .catch((error: unknown) => {
        throw this.fail(error, "make immutable", file);
      });
  }

  async delete(path: string): Promise<void> {
    const file = this.check(path, "delete");
    const client = await this.connected();
    if (this.immutabilityDays > 0) return this.deleteVersions(this.key(file), file, (key) => key === this.key(file));
    await client.send(new (aws().DeleteObjectCommand)({ Bucket: this.options.bucket, Key: this.key(file) })).catch((error: unknown) => {
      throw this.fail(error, "delete", file);
    });
  }

  /**
   * A bucket with Object Lock is versioned: a plain delete only hides the object behind a delete marker, and its data stays
   * stored (and billed) for ever. On such a remote (immutabilityDays > 0) a delete removes every version of the keys and
   * their markers; a version still under its retention is refused by the server, which fails the delete.
   */
  private async deleteVersions(keyPrefix: string, path: string, matches: (key: string) => boolean): Promise<void> {
    const client = await this.connected();
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    do {
      const page = await client
        .send(
          new (aws().ListObjectVersionsCommand)({
            Bucket: this.options.bucket,
            Prefix: keyPrefix,
            KeyMarker: keyMarker,
            VersionIdMarker: versionMarker,
          }),
        )
        .catch((error: unknown) => {
          throw this.fail(error, "delete", path);
        });
      const objects = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])]
        .filter((version) => version.Key !== undefined && matches(version.Key))
        .map((version) => ({ Key: version.Key as string, VersionId: version.VersionId }));
      if (objects.length > 0) {
        const output = await client
          .send(new (aws().DeleteObjectsCommand)({ Bucket: this.options.bucket, Delete: { Objects: objects, Quiet: true } }))
          .catch((error: unknown) => {
            throw this.fail(error, "delete", path);
          });
        const failure = output.Errors?.[0];
        if (failure !== undefined) {
          throw this.fail(Object.assign(new Error(failure.Message ?? "delete failed"), { name: failure.Code }), "delete", path);
        }
      }
      keyMarker = page.IsTruncated === true ? page.NextKeyMarker : undefined;
      versionMarker = page.IsTruncated === true ? page.NextVersionIdMarker : undefined;
    } while (keyMarker !== undefined);
  }

  async deleteTree(dir: string): Promise<void> {
    const folder = this.check(dir, "delete the tree");
    const client = await this.connected();
    if (this.immutabilityDays > 0) return this.deleteVersions(`${this.key(folder)}/`, folder, () => true);
    // Each page holds at most 1000 keys, the most one DeleteObjects accepts.
    for await (const page of this.pages(`${this.key(folder)}/`, undefined, folder)) {
      const keys = (page.Contents ?? []).map((object) => ({ Key: object.Key ?? "" })).filter((object) => object.Key !== "");
      if (keys.length === 0) continue;
      const output = await client
        .send(new (aws().DeleteObjectsCommand)({ Bucket: this.options.bucket, Delete: { Objects: keys, Quiet: true } }))
        .catch((error: unknown) => {
          throw this.fail(error, "delete the tree", folder);
        });
      const failure = output.Errors?.[0];
      if (failure !== undefined) {
        throw this.fail(Object.assign(new Error(failure.Message ?? "delete failed"), { name: failure.Code }), "delete the tree", folder);
      }
    }
  }

  async mkdir(dir: string): Promise<void> {
    this.check(dir, "create the folder");
  }

  async spaceInfo(): Promise<SpaceInfo> {
    await this.open();
    return {}; // S3 has no capacity to report, and summing every object would cost a full listing
  }

  async openRandomAccess(path: string): Promise<RandomAccessFile> {
    const file = this.check(path, "open");
    const { size } = await this.stat(file);
    const where = { remote: this.name, path: file };
    let closed = false;
    return {
      size,
      read: async (offset: number, length: number): Promise<Buffer> => {
        if (closed) throw closedHandleError(where);
        checkReadWindow(offset, length, size, where);
        if (length === 0) return Buffer.alloc(0);
        const client = await this.connected();
        try {
          const output = await client.send(
            new (aws().GetObjectCommand)({
              Bucket: this.options.bucket,
              Key: this.key(file),
              Range: `bytes=${offset}-${offset + length - 1}`,
            }),
          );
          const body = output.Body as Readable | undefined;
          const bytes = body === undefined ? Buffer.alloc(0) : Buffer.concat(await takeBytes(body, length).toArray());
          if (bytes.length !== length) {
            throw new RemoteError({
              ...where,
              code: "IO",
              operation: "read",
              detail: `got ${bytes.length} bytes of ${length} at offset ${offset}: the object changed while open`,
            });
          }
          return bytes;
        } catch (error) {
          throw this.fail(error, "read", file);
        }
      },
      close: async (): Promise<void> => {
        closed = true;
      },
    };
  }

  isTemporaryName(nameOrPath: string): boolean {
    return isTemporaryName(nameOrPath);
  }

  /**
   * A multipart upload of `parts` in order (see {@link ComposableRemote.composeObject}): copies are UploadPartCopy with
   * `x-amz-copy-source-range`, bytes are UploadPart with Content-MD5. S3's part rules are checked here, before a part is
   * sent, so that a caller's mistake is a clear INVALID_ARGUMENT rather than the server's EntityTooSmall at the end.
   */
  async composeObject(
    path: string,
    parts: Iterable<ComposePart> | AsyncIterable<ComposePart>,
    options: ComposeOptions = {},
  ): Promise<ComposeResult> {
    const file = this.check(path, "write");
    const bucket = this.options.bucket;
    const key = this.key(file);
    const concurrency = Math.max(1, options.concurrency ?? this.options.queueSize ?? 2);
    const abortError = () => writeAbortError(options.signal);
    const aborted = () => options.signal?.aborted === true;
    const inFlight = new Set<Promise<void>>();
    const completed: CompletedPart[] = [];
    const result: ComposeResult = { bytes: 0, uploadedBytes: 0, copiedBytes: 0, parts: 0 };
    let partError: { error: unknown } | undefined;
    let uploadId: string | undefined;
    options.signal?.throwIfAborted();
    const client = await this.connected();
    try {
      const created = await client.send(new (aws().CreateMultipartUploadCommand)({ Bucket: bucket, Key: key })).catch((error: unknown) => {
        throw this.fail(error, "write", file);
      });
      uploadId = created.UploadId;
      if (uploadId === undefined) throw this.composeRuleError(file, "the server started an upload without giving its id");
      const id = uploadId;
      await options.onUploadStarted?.(id);
      let previous: { number: number; size: number } | undefined;
      for await (const part of parts) {
        if (aborted()) throw abortError();
        if (partError) break;
        const number = result.parts + 1;
        if (number > S3_MAX_PARTS) throw this.composeRuleError(file, `more than ${S3_MAX_PARTS} parts`);
        if (previous && previous.size < S3_MIN_PART_SIZE) {
          throw this.composeRuleError(file, `part ${previous.number} holds ${previous.size} bytes: only the last part may be under 5 MiB`);
        }
        const size = this.checkComposePart(file, part, number);
        previous = { number, size };
        while (inFlight.size >= concurrency) await Promise.race(inFlight);
        if (partError) break;
        const sending = this.sendComposePart(client, { file, key, uploadId: id }, part, number, size).then(
          (etag) => void completed.push({ PartNumber: number, ETag: etag }),
          (error: unknown) => {
            partError ??= { error };
          },
        );
        const tracked: Promise<void> = sending.finally(() => inFlight.delete(tracked));
        inFlight.add(tracked);
        result.parts = number;
        result.bytes += size;
        if (part.kind === "copy") result.copiedBytes += size;
        else result.uploadedBytes += size;
      }
      await Promise.all(inFlight);
      if (partError) throw partError.error;
      if (aborted()) throw abortError();
      if (result.parts === 0) throw this.composeRuleError(file, "no parts: an object needs at least one");
      await options.beforeComplete?.();
      if (aborted()) throw abortError();
      completed.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
      await client
        .send(new (aws().CompleteMultipartUploadCommand)({ Bucket: bucket, Key: key, UploadId: id, MultipartUpload: { Parts: completed } }))
        .catch((error: unknown) => {
          throw this.fail(error, "write", file);
        });
      return result;
    } catch (error) {
      // No part may still be on its way when the upload is aborted, or it could be stored after the abort.
      await Promise.allSettled([...inFlight]);
      if (uploadId !== undefined) {
        await client.send(new (aws().AbortMultipartUploadCommand)({ Bucket: bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
      }
      if (aborted()) throw (error as Error).name === "AbortError" ? error : abortError();
      throw error; // a RemoteError from a request, or the caller's own (a part source, a callback)
    }
  }

  async abortComposition(path: string, uploadId: string): Promise<void> {
    const file = this.check(path, "abort the upload of");
    const client = await this.connected();
    await client
      .send(new (aws().AbortMultipartUploadCommand)({ Bucket: this.options.bucket, Key: this.key(file), UploadId: uploadId }))
      .catch((error: unknown) => {
        // Already completed, aborted or expired: nothing is left to abort.
        if (classifyS3Error(error).code === "NOT_FOUND") return;
        throw this.fail(error, "abort the upload of", file);
      });
  }

  /** The size of a part, or INVALID_ARGUMENT for one S3 would refuse (or that makes no sense). */
  private checkComposePart(file: string, part: ComposePart, number: number): number {
    let size: number;
    if (part.kind === "copy") {
      this.check(part.from, "copy");
      if (!Number.isSafeInteger(part.start) || !Number.isSafeInteger(part.end) || part.start < 0 || part.end < part.start) {
        throw this.composeRuleError(file, `part ${number} copies bytes ${part.start} to ${part.end} of "${part.from}", not a range`);
      }
      size = part.end - part.start + 1;
    } else {
      size = part.kind === "bytes" ? part.data.length : part.length;
      if (!Number.isSafeInteger(size) || size <= 0) throw this.composeRuleError(file, `part ${number} is empty`);
    }
    if (size > S3_MAX_PART_SIZE) throw this.composeRuleError(file, `part ${number} holds ${size} bytes, over S3's 5 GiB`);
    return size;
  }

  private composeRuleError(file: string, detail: string): RemoteError {
    return new RemoteError({
      code: "INVALID_ARGUMENT",
      remote: this.name,
      operation: "write",
      path: file,
      detail: `the object's parts break S3's rules: ${detail}`,
      hint: "this is a bug in Cairn: report it",
    });
  }

  /** Sends one part; resolves with its ETag. */
  private async sendComposePart(
    client: S3Client,
    upload: { file: string; key: string; uploadId: string },
    part: ComposePart,
    number: number,
    size: number,
  ): Promise<string> {
    const target = { Bucket: this.options.bucket, Key: upload.key, UploadId: upload.uploadId, PartNumber: number };
    if (part.kind === "copy") {
      const source = `${this.options.bucket}/${this.key(part.from).split("/").map(encodeURIComponent).join("/")}`;
      const output = await client
        .send(new (aws().UploadPartCopyCommand)({ ...target, CopySource: source, CopySourceRange: `bytes=${part.start}-${part.end}` }))
        .catch((error: unknown) => {
          throw this.fail(error, "copy", `${part.from}" into "${upload.file}`);
        });
      const etag = output.CopyPartResult?.ETag;
      if (etag === undefined) throw this.fail(new Error(`the server gave no ETag for part ${number}`), "write", upload.file);
      return etag;
    }
    const body = part.kind === "bytes" ? part.data : await readExactly(await part.open(), size);
    const output = await client
      .send(new (aws().UploadPartCommand)({ ...target, Body: body, ContentLength: size }))
      .catch((error: unknown) => {
        throw this.fail(error, "write", upload.file);
      });
    if (output.ETag === undefined) throw this.fail(new Error(`the server gave no ETag for part ${number}`), "write", upload.file);
    return output.ETag;
  }
}

/** All of a stream that must hold exactly `length` bytes. */
async function readExactly(stream: Readable, length: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer);
    total += (chunk as Buffer).length;
    if (total > length) break;
  }
  if (total !== length) {
    stream.destroy();
    throw new Error(`a part's stream gave ${total > length ? "more than" : "only"} ${total} bytes, ${length} expected`);
  }
  return Buffer.concat(chunks, length);
}
