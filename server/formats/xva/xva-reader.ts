import { createHash } from "node:crypto";
import { Readable, pipeline } from "node:stream";
import { ByteReader } from "../byte-reader.js";
import { CompressionError, createDecompressor, detectCompression } from "../compression.js";
import type { OvaDocument } from "./ova-document.js";
import { parseOvaXml } from "./ova-xml-parse.js";
import { TAR_BLOCK, decodeTarHeader, isZeroBlock, tarPadding } from "./tar.js";
import { XvaError } from "./xva-error.js";
import { XVA_CHUNK_SIZE } from "./xva-writer.js";
import { xxh64Hex } from "./xxhash.js";

export type XvaItem =
  | { kind: "ova"; ova: OvaDocument; xml: string }
  | { kind: "chunk"; ref: string; counter: number; offset: number; data: Buffer }
  | { kind: "end" };

/** The largest entry the reader accepts into memory (ova.xml or a chunk); XAPI's chunks are 1 MiB. */
const MAX_ENTRY = 64 * 1024 * 1024;
const CHUNK_RE = /^(Ref:[^/]+)\/(\d{8})$/;

/** Turns a possibly compressed source into an uncompressed byte iterable, by the magic of its first bytes. */
async function decompressed(source: AsyncIterable<Buffer> | Readable): Promise<AsyncIterable<Buffer>> {
  const iterator = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headBytes = 0;
  let ended = false;
  while (headBytes < 4) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    head.push(Buffer.from(next.value));
    headBytes += next.value.length;
  }
  async function* replay(): AsyncGenerator<Buffer> {
    yield* head;
    if (!ended) {
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
    }
  }
  const decompressor = createDecompressor(detectCompression(Buffer.concat(head)));
  if (!decompressor) return replay();
  return pipeline(Readable.from(replay(), { objectMode: false }), decompressor, () => {}) as unknown as Readable;
}

/**
 * Reads an XVA stream (plain, gzip or zstd, detected by magic): yields `ova` first, then every data chunk of
 * every disk in stream order with its `.xxhash` (or legacy SHA-1 `.checksum`) verified and its byte offset in
 * the disk computed as XAPI's importer does, then `end` at the tar trailer. Holds one chunk at a time.
 * @throws XvaError naming the entry and offset: bad tar header, ova.xml not first, checksum mismatch or missing,
 *   counters not increasing, truncated stream, corrupt compression.
 */
export async function* readXva(source: AsyncIterable<Buffer> | Readable, name?: string): AsyncGenerator<XvaItem> {
  const reader = new ByteReader(await decompressed(source));
  const label = name ? `${name}: ` : "";
  const disks = new Map<string, { counter: number; offset: number; firstLength: number }>();
  let longName: string | undefined;
  let first = true;
  try {
    for (;;) {
      const at = reader.position;
      const block = await reader.read(TAR_BLOCK);
      if (block.length < TAR_BLOCK) throw new XvaError("XVA_TRUNCATED", `${label}the stream ended before the tar trailer`, { offset: at });
      if (isZeroBlock(block)) {
        if (first) throw new XvaError("XVA_FIRST_NOT_OVA", `${label}the archive is empty`, { offset: at });
        yield { kind: "end" };
        return;
      }
      const header = decodeTarHeader(block, at);
      const entry = longName ?? header.name;
      longName = undefined;
      if (header.size > MAX_ENTRY)
        throw new XvaError("XVA_BAD_TAR", `${label}entry of ${header.size} bytes is larger than ${MAX_ENTRY}`, { entry, offset: at });
      const data = await readEntry(reader, header.size, entry, label);
      if (header.type === "L") {
        longName = data.toString("utf8").replace(/\0.*$/s, "");
        continue;
      }
      if (header.type === "x" || header.type === "g") continue;
      if (first) {
        if (entry !== "ova.xml") throw new XvaError("XVA_FIRST_NOT_OVA", `${label}the first entry must be ova.xml`, { entry, offset: at });
        first = false;
        const xml = data.toString("utf8");
        yield { kind: "ova", ova: parseOvaXml(xml), xml };
        continue;
      }
      const match = CHUNK_RE.exec(entry);
      if (!match) continue; // checksum tables of export_vsn < 2 and other extras are ignored
      const ref = match[1];
      const counter = Number(match[2]);
      await verifyChecksum(reader, entry, data, label);
      const disk = disks.get(ref) ?? { counter: -1, offset: 0, firstLength: 0 };
      if (counter <= disk.counter) {
        throw new XvaError("XVA_BAD_COUNTER", `${label}chunk counter ${counter} does not increase after ${disk.counter}`, {
          entry,
          offset: at,
        });
      }
      if (disk.firstLength === 0 && data.length > 0) disk.firstLength = data.length;
      const skipped = counter - disk.counter - 1;
      const offset = disk.offset + skipped * (disk.firstLength || XVA_CHUNK_SIZE);
      disks.set(ref, { counter, offset: offset + data.length, firstLength: disk.firstLength });
      yield { kind: "chunk", ref, counter, offset, data };
    }
  } catch (error) {
    if (error instanceof CompressionError)
      throw new XvaError("XVA_BAD_COMPRESSION", `${label}${error.message}`, { offset: reader.position });
    throw error;
  } finally {
    await reader.close();
  }
}

async function readEntry(reader: ByteReader, size: number, entry: string, label: string): Promise<Buffer> {
  const at = reader.position;
  const data = await reader.read(size);
  if (data.length < size)
    throw new XvaError("XVA_TRUNCATED", `${label}the stream ended after ${data.length} of ${size} bytes`, { entry, offset: at });
  const padding = tarPadding(size);
  if ((await reader.skip(padding)) < padding)
    throw new XvaError("XVA_TRUNCATED", `${label}the stream ended in the padding`, { entry, offset: at });
  return data;
}

/** Reads the entry that must follow a chunk, `<chunk>.xxhash` or `<chunk>.checksum`, and compares. */
async function verifyChecksum(reader: ByteReader, entry: string, data: Buffer, label: string): Promise<void> {
  const at = reader.position;
  const block = await reader.read(TAR_BLOCK);
  if (block.length < TAR_BLOCK || isZeroBlock(block)) {
    throw new XvaError("XVA_MISSING_CHECKSUM", `${label}chunk ${entry} is not followed by its checksum`, { entry, offset: at });
  }
  const header = decodeTarHeader(block, at);
  const stored = (await readEntry(reader, header.size, header.name, label)).toString("latin1").trim();
  let computed: string;
  if (header.name === `${entry}.xxhash`) computed = await xxh64Hex(data);
  else if (header.name === `${entry}.checksum`) computed = createHash("sha1").update(data).digest("hex");
  else
    throw new XvaError("XVA_MISSING_CHECKSUM", `${label}chunk ${entry} is followed by ${header.name}, not its checksum`, {
      entry,
      offset: at,
    });
  if (stored.toLowerCase() !== computed.toLowerCase()) {
    throw new XvaError("XVA_BAD_CHECKSUM", `${label}chunk ${entry}: ${header.name} says ${stored}, the data hashes to ${computed}`, {
      entry,
      offset: at,
    });
  }
}
