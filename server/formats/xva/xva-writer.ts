import { Readable, pipeline } from "node:stream";
import { type Compression, createCompressor } from "../compression.js";
import type { OvaDocument } from "./ova-document.js";
import { buildOvaXml } from "./ova-xml-build.js";
import { parseOvaXml } from "./ova-xml-parse.js";
import { TAR_TRAILER, encodeTarHeader, tarPadding } from "./tar.js";
import { XvaError } from "./xva-error.js";
import { xxh64Hex } from "./xxhash.js";

/** XVA data chunks are 1 MiB (`chunk_size` in XAPI's stream_vdi.ml). */
export const XVA_CHUNK_SIZE = 1024 * 1024;

/** One disk to stream into an XVA. */
export interface XvaDiskSource {
  /** The VDI's id in ova.xml, e.g. "Ref:12". */
  ref: string;
  virtualSize: number;
  /** Random access to the disk's bytes; must return exactly `length` bytes. */
  read(offset: number, length: number): Promise<Buffer>;
  /** Optional hint: true when the range is known to be all zeros, so it is skipped without reading. */
  isZero?(offset: number, length: number): boolean | Promise<boolean>;
}

export interface XvaWriteOptions {
  ova: OvaDocument | string;
  disks: XvaDiskSource[];
  /** Compression of the whole stream. @default "none" */
  compression?: Compression;
}

const ZERO_CHUNK = Buffer.alloc(XVA_CHUNK_SIZE);

function chunkName(ref: string, counter: number): string {
  return `${ref}/${String(counter).padStart(8, "0")}`;
}

function* tarEntry(name: string, data: Buffer): Generator<Buffer> {
  yield encodeTarHeader(name, data.length);
  if (data.length > 0) yield data;
  const padding = tarPadding(data.length);
  if (padding > 0) yield ZERO_CHUNK.subarray(0, padding);
}

function checkDisks(ova: OvaDocument, disks: XvaDiskSource[]): void {
  const vdis = new Set(ova.objects.filter((object) => object.class === "VDI").map((object) => object.id));
  const seen = new Set<string>();
  for (const disk of disks) {
    if (!vdis.has(disk.ref)) throw new XvaError("XVA_BAD_INPUT", `disk ${disk.ref} is not a VDI object of ova.xml`, { entry: disk.ref });
    if (seen.has(disk.ref)) throw new XvaError("XVA_BAD_INPUT", `disk ${disk.ref} is given twice`, { entry: disk.ref });
    if (!Number.isSafeInteger(disk.virtualSize) || disk.virtualSize < 0) {
      throw new XvaError("XVA_BAD_INPUT", `disk ${disk.ref} has virtualSize ${disk.virtualSize}`, { entry: disk.ref });
    }
    seen.add(disk.ref);
  }
}

async function* generateXva(options: XvaWriteOptions): AsyncGenerator<Buffer> {
  const xml = typeof options.ova === "string" ? options.ova : buildOvaXml(options.ova);
  checkDisks(typeof options.ova === "string" ? parseOvaXml(xml) : options.ova, options.disks);
  yield* tarEntry("ova.xml", Buffer.from(xml, "utf8"));
  // XAPI streams VDIs in lexicographic order of their ids: "Ref:10" before "Ref:9".
  const disks = [...options.disks].sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  for (const disk of disks) {
    const chunks = Math.ceil(disk.virtualSize / XVA_CHUNK_SIZE);
    for (let counter = 0; counter < chunks; counter++) {
      const offset = counter * XVA_CHUNK_SIZE;
      const length = Math.min(XVA_CHUNK_SIZE, disk.virtualSize - offset);
      const mustWrite = counter === 0 || counter === chunks - 1;
      if (!mustWrite && disk.isZero && (await disk.isZero(offset, length))) continue;
      const data = await disk.read(offset, length);
      if (data.length !== length) {
        throw new XvaError("XVA_BAD_INPUT", `disk ${disk.ref} returned ${data.length} bytes for a ${length}-byte read`, {
          entry: chunkName(disk.ref, counter),
          offset,
        });
      }
      if (!mustWrite && data.equals(ZERO_CHUNK.subarray(0, length))) continue;
      const name = chunkName(disk.ref, counter);
      yield* tarEntry(name, data);
      yield* tarEntry(`${name}.xxhash`, Buffer.from(await xxh64Hex(data), "latin1"));
    }
  }
  yield TAR_TRAILER;
}

/**
 * An XVA as a byte stream: `ova.xml` first, then each disk (in lexicographic order of its ref) as 1 MiB chunks
 * `Ref:N/%08d`, each followed by its XXH64 `.xxhash`; all-zero chunks other than the first and last are skipped;
 * then the tar trailer. Optionally gzip- or zstd-compressed as a whole. Pulls one chunk at a time from the disks.
 * Errors (XvaError, or the disk source's own) destroy the stream.
 */
export function createXvaStream(options: XvaWriteOptions): Readable {
  const tar = Readable.from(generateXva(options), { objectMode: false, highWaterMark: XVA_CHUNK_SIZE });
  const compressor = createCompressor(options.compression ?? "none");
  if (!compressor) return tar;
  return pipeline(tar, compressor, () => {
    // errors reach the consumer through the returned stream, which pipeline destroys with them
  }) as unknown as Readable;
}
