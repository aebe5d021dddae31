/**
 * The exact byte length of a VHD stream, learnt from its first bytes, so that `PUT /import_raw_vdi?format=vhd` can send it
 * as Content-Length.
 *
 * XAPI gives Content-Length to vhd-tool as the destination size, and vhd-tool reads the VHD's closing footer at the last
 * sector below it (import_raw_vdi.ml → vhd_tool_wrapper.ml `receive` `--destination-size`; ocaml-vhd `openstream`): XAPI's
 * 1 PiB "unknown length" makes it skip 1 PiB for that footer, and the import fails `VDI_IO_ERROR` at its very end. A VHD
 * cannot go chunked either (import_raw_vdi.ml: "Cannot handle chunked VHD"). The stream (an `/export_raw_vdi?format=vhd`)
 * has no length of its own (XAPI's export is close-delimited), but its layout gives it: footer, header, BAT, then every
 * allocated block (bitmap + data) at the place its BAT entry says, then the footer. So the footer, the header and the BAT
 * are read first (kept, and sent first), the end is the furthest block's end (or the BAT's end) plus the footer, and the
 * bytes are counted on the way so that a stream laid out otherwise fails here with a clear message instead of at XAPI.
 */
import { Readable } from "node:stream";
import { BAT_UNUSED, bitmapSizeFor, decodeFooter, decodeHeader, FOOTER_SIZE, HEADER_SIZE, SECTOR_SIZE } from "../../formats/vhd/index.js";

export class VhdLayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VhdLayoutError";
  }
}

/**
 * Reads `source` until its BAT is known, then returns a stream of the same bytes whose `length` is the VHD's exact size.
 * The returned stream fails (with {@link VhdLayoutError}) if `source` turns out longer or shorter than that, or fails
 * itself. `what` names the disk in errors ("disk xvda of web-ext4").
 */
export async function withVhdLength(source: Readable, what: string): Promise<Readable & { length: number }> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let prefix: Buffer = Buffer.alloc(0);
  const need = async (bytes: number, part: string) => {
    while (prefix.length < bytes) {
      const next = await iterator.next();
      if (next.done) throw new VhdLayoutError(`the VHD of ${what} ended after ${prefix.length} bytes, before its ${part}`);
      prefix = Buffer.concat([prefix, next.value]);
    }
  };
  await need(FOOTER_SIZE, "footer");
  const footer = decodeFooter(prefix.subarray(0, FOOTER_SIZE), { file: what, offset: 0 });
  const headerAt = footer.dataOffset ?? FOOTER_SIZE;
  await need(headerAt + HEADER_SIZE, "header");
  const header = decodeHeader(prefix.subarray(headerAt, headerAt + HEADER_SIZE), { file: what, offset: headerAt });
  const batBytes = Math.ceil((header.maxTableEntries * 4) / SECTOR_SIZE) * SECTOR_SIZE;
  await need(header.tableOffset + batBytes, "BAT");
  const blockBytes = bitmapSizeFor(header.blockSize) + header.blockSize;
  let end = Math.max(header.tableOffset + batBytes, headerAt + HEADER_SIZE);
  for (let index = 0; index < header.maxTableEntries; index++) {
    const sector = prefix.readUInt32BE(header.tableOffset + index * 4);
    if (sector !== BAT_UNUSED) end = Math.max(end, sector * SECTOR_SIZE + blockBytes);
  }
  const length = end + FOOTER_SIZE;
  const first = prefix;
  const counted = Readable.from(
    (async function* replay() {
      let sent = first.length;
      yield first;
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        sent += next.value.length;
        if (sent > length) {
          throw new VhdLayoutError(`the VHD of ${what} is longer than its BAT says (more than ${length} bytes): it cannot be sent to XAPI`);
        }
        yield next.value;
      }
      if (sent !== length) throw new VhdLayoutError(`the VHD of ${what} ended after ${sent} of the ${length} bytes its BAT announces`);
    })(),
    { objectMode: false },
  ) as Readable & { length: number };
  counted.length = length;
  // Stopping the upload stops the reading of the source.
  counted.once("close", () => {
    if (!source.destroyed && !source.readableEnded) source.destroy();
  });
  return counted;
}
