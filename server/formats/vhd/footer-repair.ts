import { open } from "node:fs/promises";
import { FOOTER_SIZE } from "./constants.js";
import { type VhdFooter, decodeFooter } from "./footer.js";
import { VhdError } from "./vhd-error.js";
import { VhdFile } from "./vhd-file.js";
import { decodesAsFooter, inspectFooterCopy, isDamagedFooterError, readAt } from "./vhd-footers.js";

/**
 * Rewrites a damaged footer of a dynamic or differencing VHD from the other one: the trailing footer from the copy at
 * offset 0, or the copy from the trailing footer (the same 512 bytes, as the format wants them); written, then
 * fdatasync'd, then the file is opened again to be sure it reads.
 * @returns which footer was rewritten; undefined when both were fine
 * @throws VhdError VHD_TRUNCATED for a cut file (its end is missing, not just damaged); the trailing footer's error
 *   (VHD_BAD_COOKIE, VHD_BAD_CHECKSUM) when both footers are damaged, or when a fixed disk's only footer is
 */
export async function repairVhdFooter(path: string): Promise<{ repaired: "trailing" | "copy" | undefined }> {
  const handle = await open(path, "r+");
  let repaired: "trailing" | "copy" | undefined;
  try {
    const size = (await handle.stat()).size;
    if (size < FOOTER_SIZE)
      throw new VhdError("VHD_TRUNCATED", `the file is ${size} bytes, shorter than a footer`, {
        file: path,
        structure: "footer",
        offset: 0,
      });
    const footerAt = size - FOOTER_SIZE;
    const trailingBytes = await readAt(handle, footerAt, FOOTER_SIZE);
    let trailing: VhdFooter | undefined;
    let trailingError: VhdError | undefined;
    try {
      trailing = decodeFooter(trailingBytes, { file: path, offset: footerAt });
    } catch (error) {
      trailingError = error as VhdError;
    }
    if (trailing) {
      // A fixed disk has no copy; a copy that decodes is left alone even when it differs (a merge writes them in turn).
      if (trailing.dataOffset === null || decodesAsFooter(await readAt(handle, 0, FOOTER_SIZE))) return { repaired: undefined };
      await handle.write(trailingBytes, 0, FOOTER_SIZE, 0);
      repaired = "copy";
    } else {
      const copy = await inspectFooterCopy(handle, path);
      if (copy && size < copy.sizeNeeded) {
        throw new VhdError(
          "VHD_TRUNCATED",
          `the file is ${size} bytes but its footer copy, header and BAT need ${copy.sizeNeeded}: the file was cut, and a cut file cannot be repaired`,
          { file: path, structure: "footer", offset: footerAt },
        );
      }
      if (!copy || !isDamagedFooterError(trailingError)) {
        const why = trailingError?.message ?? "unreadable";
        throw new VhdError(
          trailingError?.code ?? "VHD_BAD_FIELD",
          `the trailing footer is damaged (${why}) and the copy at offset 0 cannot replace it (damaged too, or no copy): nothing to repair it from`,
          { file: path, structure: "footer", offset: footerAt },
        );
      }
      await handle.write(copy.bytes, 0, FOOTER_SIZE, footerAt);
      repaired = "trailing";
    }
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await (await VhdFile.open(path)).close();
  return { repaired };
}
