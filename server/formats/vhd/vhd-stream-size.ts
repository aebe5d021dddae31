/**
 * The size a streamed dynamic or differencing VHD will have, known as soon as its head (footer copy, header, BAT) has gone
 * by: what a transfer's progress is measured against. A delta export's bytes are its allocated blocks, not its disk's
 * virtual size, so a bar drawn against the virtual size crawls and then jumps to done.
 *
 * A passive tap: every chunk passes through unchanged and nothing it reads can fail the stream (a head it cannot read, or
 * a head larger than {@link MAX_HEAD_BYTES}, only means no size is reported; the stream's own parser says what is wrong).
 */
import { Transform, type TransformCallback } from "node:stream";
import { BAT_UNUSED, DiskType, FOOTER_SIZE, HEADER_SIZE, SECTOR_SIZE, bitmapSizeFor } from "./constants.js";
import { decodeFooter } from "./footer.js";
import { decodeHeader } from "./header.js";
import { batSizeBytes, decodeBat } from "./layout.js";

/** A BAT of 2 TiB of 2 MiB blocks is 4 MiB; past this the head is not held any longer. */
const MAX_HEAD_BYTES = 64 * 1024 * 1024;

export interface VhdStreamSize {
  /** Bytes of the whole stream: the end of its last allocated block (or of its BAT when it has none), plus the footer. */
  streamBytes: number;
  allocatedBlocks: number;
  blockSize: number;
}

/**
 * Decodes the head held so far, or says how many bytes it needs before it can go on (so that a long BAT is not decoded
 * again at every chunk). @throws on a head that is no dynamic VHD's
 */
function sizeFromHead(head: Buffer): VhdStreamSize | { needBytes: number } {
  if (head.length < FOOTER_SIZE) return { needBytes: FOOTER_SIZE };
  const footer = decodeFooter(head.subarray(0, FOOTER_SIZE), { offset: 0 }, "footer copy");
  if (footer.diskType === DiskType.Fixed || footer.dataOffset === null) throw new Error("not a dynamic VHD");
  if (head.length < footer.dataOffset + HEADER_SIZE) return { needBytes: footer.dataOffset + HEADER_SIZE };
  const header = decodeHeader(head.subarray(footer.dataOffset, footer.dataOffset + HEADER_SIZE), { offset: footer.dataOffset });
  const batEnd = header.tableOffset + batSizeBytes(header.maxTableEntries);
  if (head.length < batEnd) return { needBytes: batEnd };
  const bat = decodeBat(head.subarray(header.tableOffset, batEnd), header.maxTableEntries);
  const blockBytes = bitmapSizeFor(header.blockSize) + header.blockSize;
  let allocatedBlocks = 0;
  let end = Math.ceil(batEnd / SECTOR_SIZE) * SECTOR_SIZE;
  for (const sector of bat) {
    if (sector === BAT_UNUSED) continue;
    allocatedBlocks++;
    end = Math.max(end, sector * SECTOR_SIZE + blockBytes);
  }
  return { streamBytes: end + FOOTER_SIZE, allocatedBlocks, blockSize: header.blockSize };
}

/** A pass-through that calls `onSize` once, when the VHD's head has been read. */
export function measureVhdStream(onSize: (size: VhdStreamSize) => void): Transform {
  let head: Buffer[] = [];
  let held = 0;
  let needBytes = FOOTER_SIZE;
  let settled = false;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      if (!settled) {
        head.push(chunk);
        held += chunk.length;
        if (held > MAX_HEAD_BYTES) settled = true;
        else if (held >= needBytes) {
          try {
            const found = sizeFromHead(head.length === 1 ? head[0]! : Buffer.concat(head));
            if ("needBytes" in found) needBytes = found.needBytes;
            else {
              settled = true;
              onSize(found);
            }
          } catch {
            settled = true;
          }
        }
        if (settled) head = [];
      }
      callback(null, chunk);
    },
  });
}
