import type { Readable } from "node:stream";
import type { Remote } from "./remote.js";

/**
 * Server-side composition of an object (S3 only): a multipart upload whose parts are either copies of byte ranges of
 * objects already in the bucket (UploadPartCopy with `x-amz-copy-source-range`, no byte crosses the network) or bytes
 * sent from here (UploadPart with Content-MD5). It lets a caller rewrite a few regions of a large object at a cost
 * proportional to those regions: the VHD merge on S3 (server/repository/composed-merge.ts) is the one user.
 */

/** S3's rules for the parts of one multipart upload (AWS documents them; compatible servers follow them). */
export const S3_MIN_PART_SIZE = 5 * 1024 * 1024;
export const S3_MAX_PART_SIZE = 5 * 1024 * 1024 * 1024;
export const S3_MAX_PARTS = 10_000;

/** One part of a composed object, in order. Every part but the last must hold 5 MiB to 5 GiB; at most 10 000 parts. */
export type ComposePart =
  /** Bytes `start` to `end` (inclusive, as {@link ByteRange}) of the object at `from`, a path of the same remote. */
  | { kind: "copy"; from: string; start: number; end: number }
  /** Bytes sent from here: held in memory whole while sent (Content-MD5 needs them), so keep parts near the minimum. */
  | { kind: "bytes"; data: Buffer }
  /** A stream of exactly `length` bytes, read into memory before it is sent (same reason). */
  | { kind: "stream"; length: number; open: () => Promise<Readable> | Readable };

export interface ComposeOptions {
  /** Aborts the composition: the upload is aborted, nothing appears, the promise rejects with an AbortError. */
  signal?: AbortSignal;
  /**
   * Called with the upload's id once it exists, before any part is sent, and awaited: a caller that must be able to
   * abort the upload after a crash of this process records it here (see {@link ComposableRemote.abortComposition}).
   */
  onUploadStarted?: (uploadId: string) => void | Promise<void>;
  /**
   * Called once every part is stored, just before the object is replaced, and awaited. What it throws aborts the
   * upload as any failure does (the object is left as it was).
   */
  beforeComplete?: () => void | Promise<void>;
  /** Parts in flight at once (uploads hold their bytes in memory). @default the remote's queueSize (2) */
  concurrency?: number;
}

export interface ComposeResult {
  /** The size of the new object. */
  bytes: number;
  /** Bytes sent from here (the uploaded parts), as opposed to copied by the server. */
  uploadedBytes: number;
  /** Bytes the server copied from existing objects. */
  copiedBytes: number;
  parts: number;
}

/** A remote that can compose objects server-side (S3). */
export interface ComposableRemote extends Remote {
  /**
   * Writes `path` atomically from `parts`, taken lazily one after the other (memory: `concurrency` uploaded parts).
   * Nothing appears under `path` until the last part is stored and the upload completed; an existing object there is
   * replaced at that moment. On any failure, abort or a part breaking S3's rules (INVALID_ARGUMENT, found before it is
   * sent), the upload is aborted and the promise rejects as {@link Remote.writeStream} does.
   */
  composeObject(path: string, parts: Iterable<ComposePart> | AsyncIterable<ComposePart>, options?: ComposeOptions): Promise<ComposeResult>;
  /**
   * Aborts an upload a composition of `path` left behind (a process killed mid-way cannot abort its own). An upload
   * already gone (completed, aborted, expired) is success.
   */
  abortComposition(path: string, uploadId: string): Promise<void>;
}

/** Whether `remote` can compose objects server-side. */
export function canCompose(remote: Remote): remote is ComposableRemote {
  const candidate = remote as Partial<ComposableRemote>;
  return typeof candidate.composeObject === "function" && typeof candidate.abortComposition === "function";
}
