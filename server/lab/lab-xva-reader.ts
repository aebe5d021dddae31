/**
 * The lab's own reader of an uploaded XVA (`PUT /import`), written from XAPI's import code and sharing nothing with
 * Cairn's XVA code (server/formats), so that an XVA Cairn gets wrong fails here as on a pool. Only outside libraries are
 * used: zlib (gzip), the `zstd` CLI, xxhash-wasm (XXH64), crypto (SHA-1); ova.xml is read with the lab's XML-RPC codec.
 *
 * XAPI's rules (ocaml/xapi/import.ml `with_open_archive`, `stream_import`, `non_cdrom_vdis`; ocaml/xapi/stream_vdi.ml
 * `recv_all_vdi`, `verify_inline_checksum`; ocaml-tar's header checks):
 * - the first tar header must parse (checksum included); if it does not, the body is taken as compressed (zstd by its
 *   magic, else gzip) and read again; the first file must be `ova.xml`, else `IMPORT_ERROR_UNEXPECTED_FILE
 *   ["ova.xml", name]`; ova.xml is an XML-RPC struct `{version, objects: [{class, id, snapshot}]}`;
 * - the disks streamed are the VDIs of non-CD VBDs whose SR (found in ova.xml, else `IMPORT_ERROR_FAILED_TO_FIND_OBJECT
 *   [id]`) is not an ISO SR, in lexicographic order of their ova.xml ids; each is read chunk after chunk until its
 *   `virtual_size` is covered: a chunk is `<id>/<suffix>` (another prefix: `Failure "Invalid XVA file"`), suffixes
 *   increase lexicographically, a gap of n suffixes is n zero chunks of the first chunk's length (the first chunk read in
 *   the whole import), and each chunk is followed by its checksum file, `.xxhash` (XXH64, `%016LX`) or `.checksum`
 *   (SHA-1, lower-case hex), checked (`Invalid_checksum`);
 * - a body that ends inside any of this is `End_of_file`: `IMPORT_ERROR_PREMATURE_EOF`; any other exception is
 *   `IMPORT_ERROR [Printexc.to_string e]`.
 * Then, as the lab's Uploads rule (README): the archive must go on to its two zero blocks, and a compressed body to the end
 * of its compressed stream.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import xxhash from "xxhash-wasm";
import { LabByteInput, LabEndOfFile } from "./lab-byte-input.js";
import { XapiFailure } from "./xapi-failure.js";
import { parseValueDocument } from "./xmlrpc-codec.js";

const BLOCK = 512;
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** ova.xml as XAPI's `header_of_rpc` reads it. */
export interface LabOva {
  version: Record<string, unknown>;
  objects: { class: string; id: string; snapshot: Record<string, unknown> }[];
}

/** A disk the import streams into: its ova.xml id (the chunk prefix), its size, and where its bytes go. */
export interface LabXvaDisk {
  id: string;
  size: number;
  write(offset: number, data: Buffer): Promise<void>;
}

/** OCaml's `Failure msg` as XAPI reports it: `IMPORT_ERROR ["Failure(\"msg\")"]`. */
function failure(message: string): XapiFailure {
  return new XapiFailure("IMPORT_ERROR", [`Failure(${JSON.stringify(message)})`]);
}

interface TarHeader {
  name: string;
  size: number;
}

function octal(block: Buffer, at: number, length: number): number {
  if ((block[at] & 0x80) !== 0) {
    // GNU base-256 for sizes above 8 GiB.
    let value = 0;
    for (let i = at + 1; i < at + length; i++) value = value * 256 + block[i];
    return value;
  }
  const text = block
    .toString("latin1", at, at + length)
    .replace(/\0.*$/s, "")
    .trim();
  return text === "" ? 0 : Number.parseInt(text, 8);
}

/** ocaml-tar's `Header.unmarshal`: undefined for a zero block (the end), an error for a bad checksum. */
function parseTarHeader(block: Buffer): TarHeader | undefined {
  if (block.every((byte) => byte === 0)) return undefined;
  const stored = octal(block, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  if (stored !== sum) throw new TarChecksumError(`Tar.Header.Checksum_mismatch (stored ${stored}, computed ${sum})`);
  let name = block.toString("latin1", 0, 100).replace(/\0.*$/s, "");
  if (block.toString("latin1", 257, 262) === "ustar") {
    const prefix = block.toString("latin1", 345, 500).replace(/\0.*$/s, "");
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  return { name, size: octal(block, 124, 12) };
}

class TarChecksumError extends Error {}

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;

/** `zstd -d` as a stream (Node 20's zlib has no zstd; XAPI pipes through the same tool). */
function zstdDecompress(source: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  const child = spawn("zstd", ["-d", "-c", "-q"], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => void (stderr += chunk.toString()));
  child.stdin.on("error", () => undefined); // the exit status says why
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  child.on("error", () => undefined);
  Readable.from(source, { objectMode: false })
    .on("error", () => child.stdin.destroy())
    .pipe(child.stdin);
  return (async function* () {
    try {
      for await (const chunk of child.stdout) yield chunk as Buffer;
      const code = await exited;
      if (code !== 0) {
        throw /truncat|premature|unexpected end|incomplete/i.test(stderr)
          ? new LabEndOfFile("the zstd stream", 0)
          : failure(`zstd: ${stderr.trim() || `exit ${code}`}`);
      }
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  })();
}

function gunzip(source: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  const stream = Readable.from(source, { objectMode: false }).pipe(createGunzip());
  return (async function* () {
    try {
      for await (const chunk of stream) yield chunk as Buffer;
    } catch (error) {
      throw (error as NodeJS.ErrnoException).code === "Z_BUF_ERROR"
        ? new LabEndOfFile("the gzip stream", 0)
        : failure(`gzip: ${(error as Error).message}`);
    }
  })();
}

/** An uploaded XVA read as XAPI reads it: {@link readOva}, then {@link receiveDisks}, then {@link finish}. */
export class LabXvaUpload {
  private input!: LabByteInput;
  private readonly raw: AsyncIterator<Buffer>;
  private firstChunkLength = -1;
  private compressed = false;

  constructor(body: AsyncIterable<Buffer>) {
    this.raw = body[Symbol.asyncIterator]();
  }

  /** Opens the archive (plain, else zstd or gzip) and reads ova.xml. */
  async readOva(): Promise<LabOva> {
    const head: Buffer[] = [];
    let headBytes = 0;
    let rawEnded = false;
    while (headBytes < BLOCK) {
      const next = await this.raw.next();
      if (next.done) {
        rawEnded = true;
        break;
      }
      head.push(next.value);
      headBytes += next.value.length;
    }
    const first = Buffer.concat(head);
    const raw = this.raw;
    const replay = (async function* () {
      yield first;
      if (!rawEnded) for (let next = await raw.next(); !next.done; next = await raw.next()) yield next.value;
    })();
    let plain = false;
    try {
      plain = first.length >= BLOCK && parseTarHeader(first.subarray(0, BLOCK)) !== undefined;
    } catch (error) {
      if (!(error instanceof TarChecksumError)) throw error;
    }
    this.compressed = !plain;
    const body = plain ? replay : first.subarray(0, 4).equals(ZSTD_MAGIC) ? zstdDecompress(replay) : gunzip(replay);
    this.input = new LabByteInput(body);
    const header = await this.nextHeader("the first file (ova.xml)");
    if (header === undefined) throw new LabEndOfFile("the first file (ova.xml)", this.input.offset);
    if (header.name !== "ova.xml") throw new XapiFailure("IMPORT_ERROR_UNEXPECTED_FILE", ["ova.xml", header.name]);
    const xml = (await this.input.read(header.size, "ova.xml")).toString("utf8");
    await this.input.skipTo(this.input.offset + padding(header.size), "the padding of ova.xml");
    return parseOva(xml);
  }

  /** Streams the disks XAPI streams for this ova.xml (see the file's comment); `disks` holds those the import created. */
  async receiveDisks(ova: LabOva, disks: Map<string, Omit<LabXvaDisk, "id">>, checkCancelled: () => void): Promise<void> {
    const streamed = streamedVdis(ova).filter((id) => disks.has(id));
    streamed.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const h64 = (await xxhash()).h64Raw;
    for (const id of streamed) {
      const disk = disks.get(id)!;
      let offset = 0;
      let lastSuffix = "-1";
      while (offset < disk.size) {
        checkCancelled();
        const header = await this.nextHeader(`a chunk of ${id}`);
        if (header === undefined) throw new LabEndOfFile(`a chunk of ${id}`, this.input.offset);
        if (this.firstChunkLength < 0) this.firstChunkLength = header.size;
        if (!header.name.startsWith(id)) throw failure("Invalid XVA file");
        const suffix = header.name.slice(id.length + 1);
        if (!(suffix > lastSuffix)) throw failure("Invalid XVA file");
        const skipped = (Number.parseInt(suffix, 10) - Number.parseInt(lastSuffix, 10) - 1) * this.firstChunkLength;
        if (!Number.isSafeInteger(skipped) || skipped < 0) throw failure(`int_of_string ${JSON.stringify(suffix)}`);
        const data = await this.input.read(header.size, `chunk ${header.name}`);
        const at = offset + skipped;
        if (at + data.length > disk.size) {
          throw new XapiFailure("IMPORT_ERROR", [
            `Unix.Unix_error(Unix.ENOSPC, "write", "") (chunk ${header.name} ends past the disk's ${disk.size} bytes)`,
          ]);
        }
        if (data.length > 0 && data.some((byte) => byte !== 0)) await disk.write(at, data);
        const sumHeader = await this.nextHeader(`the checksum of ${header.name}`);
        if (sumHeader === undefined) throw new LabEndOfFile(`the checksum of ${header.name}`, this.input.offset);
        let computed: string;
        if (sumHeader.name.endsWith(".xxhash")) computed = h64(data, 0n).toString(16).toUpperCase().padStart(16, "0");
        else if (sumHeader.name.endsWith(".checksum")) computed = createHash("sha1").update(data).digest("hex");
        else throw failure(`Found unsupported checksum file: ${sumHeader.name}`);
        await this.input.skipTo(this.input.offset + padding(header.size), `the padding of ${header.name}`);
        // verify_inline_checksum: the checksum file must be that chunk's, and hold the same text.
        if (sumHeader.name.slice(0, sumHeader.name.lastIndexOf(".")) !== header.name) {
          throw new XapiFailure("IMPORT_ERROR", [`Not_found (checksum file ${sumHeader.name} follows chunk ${header.name})`]);
        }
        const stored = (await this.input.read(sumHeader.size, sumHeader.name)).toString("latin1");
        await this.input.skipTo(this.input.offset + padding(sumHeader.size), `the padding of ${sumHeader.name}`);
        if (stored !== computed) {
          throw new XapiFailure("IMPORT_ERROR", [
            `Stream_vdi.Invalid_checksum("Block ${header.name} checksum failed: original = ${stored}; recomputed = ${computed}")`,
          ]);
        }
        offset = at + data.length;
        lastSuffix = suffix;
      }
    }
  }

  /** The rest of the archive, to its two zero blocks (and, compressed, to the end of the compressed stream). */
  async finish(): Promise<void> {
    let zeros = 0;
    while (zeros < 2) {
      const block = await this.input.read(BLOCK, "the end of the archive");
      if (block.every((byte) => byte === 0)) {
        zeros++;
        continue;
      }
      if (zeros > 0) throw failure("a lone zero block: the tar trailer is two zero blocks");
      const header = parseTarHeaderOrFail(block);
      await this.input.skipTo(this.input.offset + header!.size + padding(header!.size), header!.name);
    }
    // A compressed body must reach the end of its compressed stream (the decompressor checks it, a cut one fails).
    if (this.compressed) await this.input.drain();
  }

  close(): void {
    void this.input?.close().catch(() => undefined);
    void this.raw.return?.().catch(() => undefined);
  }

  private async nextHeader(what: string): Promise<TarHeader | undefined> {
    const block = await this.input.read(BLOCK, `the tar header of ${what}`);
    return parseTarHeaderOrFail(block);
  }
}

function parseTarHeaderOrFail(block: Buffer): TarHeader | undefined {
  try {
    return parseTarHeader(block);
  } catch (error) {
    if (error instanceof TarChecksumError) throw new XapiFailure("IMPORT_ERROR", [error.message]);
    throw error;
  }
}

function parseOva(xml: string): LabOva {
  let value: unknown;
  try {
    value = parseValueDocument(xml);
  } catch (error) {
    throw new XapiFailure("IMPORT_ERROR", [`Xmlrpc parse error in ova.xml: ${(error as Error).message}`]);
  }
  const bad = (what: string) => new XapiFailure("IMPORT_ERROR", [`Rpc.Runtime_error in ova.xml: ${what}`]);
  const isStruct = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isStruct(value)) throw bad("the document is not a struct");
  if (!isStruct(value.version)) throw bad("no version struct");
  if (!Array.isArray(value.objects)) throw bad("no objects array");
  const objects = value.objects.map((object, index) => {
    if (!isStruct(object) || typeof object.class !== "string" || typeof object.id !== "string" || !isStruct(object.snapshot)) {
      throw bad(`object ${index} is not {class, id, snapshot}`);
    }
    return { class: object.class, id: object.id, snapshot: object.snapshot };
  });
  return { version: value.version, objects };
}

/** import.ml `non_cdrom_vdis`: the VDIs of non-CD VBDs whose SR is not an ISO library. */
export function streamedVdis(ova: LabOva): string[] {
  const find = (id: string) => {
    const object = ova.objects.find((candidate) => candidate.id === id);
    if (object === undefined) throw new XapiFailure("IMPORT_ERROR_FAILED_TO_FIND_OBJECT", [id]);
    return object;
  };
  const ids: string[] = [];
  for (const vbd of ova.objects.filter((object) => object.class === "VBD" && object.snapshot.type !== "CD")) {
    const id = String(vbd.snapshot.VDI);
    const vdi = find(id);
    const sr = find(String(vdi.snapshot.SR));
    if (sr.snapshot.content_type !== "iso" && !ids.includes(id)) ids.push(id);
  }
  return ids;
}
