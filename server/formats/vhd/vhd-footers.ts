/**
 * A dynamic or differencing VHD holds its footer twice: at the end (the one that counts) and a copy at offset 0. When one
 * of them is damaged the other still describes the file, so a reader can go on and a repair can rewrite it.
 */
import { BAT_UNUSED, FOOTER_SIZE, HEADER_SIZE, SECTOR_SIZE, bitmapSizeFor } from "./constants.js";
import { type VhdFooter, decodeFooter } from "./footer.js";
import { decodeHeader } from "./header.js";
import { decodeBat } from "./layout.js";
import { VhdError } from "./vhd-error.js";

/** Which footer failed its checks: the one at the end of the file, or its copy at offset 0. */
export type FooterDamage = "trailing" | "copy";

/** Reads at a position, short past the end of the file (as a file handle does): all the footer checks need. */
export interface PositionalReader {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
}

export async function readAt(handle: PositionalReader, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buf, 0, length, offset);
  return bytesRead === length ? buf : buf.subarray(0, bytesRead);
}

/** Damage, as opposed to a footer that is intact but describes something unsupported. */
export function isDamagedFooterError(error: unknown): boolean {
  return error instanceof VhdError && (error.code === "VHD_BAD_COOKIE" || error.code === "VHD_BAD_CHECKSUM");
}

export function decodesAsFooter(buf: Buffer): boolean {
  try {
    decodeFooter(buf, {});
    return true;
  } catch {
    // The question is only whether it decodes: the reason it does not is not needed.
    return false;
  }
}

/** The footer copy at 0 when it is valid and describes a dynamic or differencing disk, and the file size its header and BAT need. */
export async function inspectFooterCopy(
  handle: PositionalReader,
  file: string,
): Promise<{ footer: VhdFooter; bytes: Buffer; sizeNeeded: number } | undefined> {
  try {
    const bytes = await readAt(handle, 0, FOOTER_SIZE);
    const footer = decodeFooter(bytes, { file, offset: 0 }, "footer copy");
    if (footer.dataOffset === null) return undefined;
    const header = decodeHeader(await readAt(handle, footer.dataOffset, HEADER_SIZE), { file, offset: footer.dataOffset });
    const batBytes = header.maxTableEntries * 4;
    const bat = decodeBat(await readAt(handle, header.tableOffset, batBytes), header.maxTableEntries);
    let end = Math.max(header.tableOffset + batBytes, footer.dataOffset + HEADER_SIZE);
    for (const entry of bat)
      if (entry !== BAT_UNUSED) end = Math.max(end, entry * SECTOR_SIZE + bitmapSizeFor(header.blockSize) + header.blockSize);
    return { footer, bytes, sizeNeeded: end + FOOTER_SIZE };
  } catch {
    // Any failure (unreadable, damaged, cut) means "no usable footer copy", which is what undefined says.
    return undefined;
  }
}

/**
 * The footer at the end of the file; when it is damaged but the copy at 0 is valid and the file holds everything its
 * header and BAT need, the copy (`damaged: "trailing"`).
 * @throws VhdError VHD_TRUNCATED when the copy shows that the file was cut; else the trailing footer's own error
 */
export async function readTrailingFooter(
  handle: PositionalReader,
  size: number,
  file: string,
): Promise<{ footer: VhdFooter; damaged?: FooterDamage }> {
  const footerAt = size - FOOTER_SIZE;
  try {
    return { footer: decodeFooter(await readAt(handle, footerAt, FOOTER_SIZE), { file, offset: footerAt }) };
  } catch (error) {
    const copy = await inspectFooterCopy(handle, file);
    if (copy && size < copy.sizeNeeded) {
      throw new VhdError(
        "VHD_TRUNCATED",
        `the file is ${size} bytes but its footer copy, header and BAT need ${copy.sizeNeeded}: the file was cut`,
        { file, structure: "footer", offset: footerAt },
      );
    }
    if (!copy || !isDamagedFooterError(error)) throw error;
    return { footer: copy.footer, damaged: "trailing" };
  }
}

/**
 * The header's bytes, and whether the footer copy at 0 is damaged. When the header follows the copy (the layout every
 * writer uses) both come in one read, so checking the copy costs no extra request on a remote.
 */
export async function readHeaderCheckingCopy(
  handle: PositionalReader,
  dataOffset: number,
): Promise<{ header: Buffer; copyDamaged: boolean }> {
  if (dataOffset === FOOTER_SIZE) {
    const both = await readAt(handle, 0, FOOTER_SIZE + HEADER_SIZE);
    return { header: both.subarray(FOOTER_SIZE), copyDamaged: !decodesAsFooter(both.subarray(0, FOOTER_SIZE)) };
  }
  const [header, copy] = await Promise.all([readAt(handle, dataOffset, HEADER_SIZE), readAt(handle, 0, FOOTER_SIZE)]);
  return { header, copyDamaged: !decodesAsFooter(copy) };
}
