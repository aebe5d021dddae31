import { parseVhdStream, VhdError } from "../formats/vhd/index.js";
import { DISK_BLOCK_SIZE } from "./disk-store.js";
import { failRequest, objectFromQuery, type HandlerContext } from "./http-context.js";
import { pacedImportBody } from "./import-faults.js";
import { createVdi, refreshUtilisation } from "./vdi-operations.js";
import { toXapiFailure, XapiFailure } from "./xapi-failure.js";

const SECTOR = 512;

/** Writes the sectors of a VHD block whose bitmap bits are set, in runs. */
async function writeVhdBlock(
  context: HandlerContext,
  location: string,
  size: number,
  index: number,
  bitmap: Buffer,
  data: Buffer,
): Promise<void> {
  const base = index * data.length;
  const sectors = data.length / SECTOR;
  let start = -1;
  for (let sector = 0; sector <= sectors; sector++) {
    const set = sector < sectors && (bitmap[sector >> 3] & (0x80 >> (sector & 7))) !== 0;
    if (set && start === -1) start = sector;
    if (!set && start !== -1) {
      const offset = base + start * SECTOR;
      const end = Math.min(base + sector * SECTOR, size);
      if (end > offset) await context.pool.disks.write(location, offset, data.subarray(start * SECTOR, end - base));
      start = -1;
    }
  }
}

/** Raw body: written block by block (2 MiB aligned), up to the VDI's virtual size. */
async function importRaw(context: HandlerContext, location: string, size: number): Promise<void> {
  const { pool } = context;
  let offset = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    const block = Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    await pool.disks.write(location, offset, block);
    offset += block.length;
  };
  for await (let chunk of pacedImportBody(pool.faults, context.body)) {
    pool.tasks.checkCancelled(context.task);
    while (chunk.length > 0 && offset + pendingBytes < size) {
      const room = Math.min(DISK_BLOCK_SIZE - pendingBytes, size - offset - pendingBytes);
      const part = chunk.subarray(0, room);
      pending.push(part);
      pendingBytes += part.length;
      chunk = chunk.subarray(part.length);
      if (pendingBytes === DISK_BLOCK_SIZE || offset + pendingBytes === size) await flush();
    }
    if (offset >= size) break;
  }
  if (pendingBytes > 0) await flush();
  if (offset < size) throw new XapiFailure("VDI_IO_ERROR", [`raw import ended after ${offset} of ${size} bytes`]);
}

async function importVhd(context: HandlerContext, location: string, size: number): Promise<void> {
  for await (const item of parseVhdStream(pacedImportBody(context.pool.faults, context.body), "import_raw_vdi")) {
    context.pool.tasks.checkCancelled(context.task);
    if (item.kind === "header") {
      if (item.footer.currentSize > size) {
        throw new XapiFailure("VDI_IO_ERROR", [`the VHD's size ${item.footer.currentSize} exceeds the VDI's virtual size ${size}`]);
      }
    } else {
      await writeVhdBlock(context, location, size, item.index, item.bitmap, item.data);
    }
  }
}

/**
 * `PUT /import_raw_vdi?vdi=|sr_id=&format=raw|vhd`: writes a raw image (exactly `virtual_size` bytes) or a
 * dynamic/differencing VHD (allocated sectors only, applied over the current content) into an existing VDI,
 * or, raw with `sr_id`, into a new "Imported VDI" sized from Content-Length. HTTP chunked encoding is refused
 * (404, `INTERNAL_ERROR`). 200 headers go out before the body is read. Result: the VDI ref.
 */
export async function handleImportRawVdi(context: HandlerContext): Promise<void> {
  const { pool, req, res, query, task } = context;
  if (req.headers["transfer-encoding"] !== undefined) {
    return failRequest(context, 404, new XapiFailure("INTERNAL_ERROR", [`Cannot handle encoding: ${req.headers["transfer-encoding"]}`]));
  }
  const format = query.get("format") ?? "raw";
  let vdi: string | undefined;
  try {
    if (format !== "raw" && format !== "vhd") throw new XapiFailure("INTERNAL_ERROR", [`Unknown format ${format}`]);
    vdi = objectFromQuery(pool, "VDI", query, ["vdi"]);
    if (vdi === undefined) {
      const sr = objectFromQuery(pool, "SR", query, ["sr_id"]);
      const length = Number(req.headers["content-length"]);
      if (sr === undefined || format !== "raw" || !Number.isSafeInteger(length)) {
        throw new XapiFailure("INTERNAL_ERROR", ["give vdi, or sr_id with a raw body of known Content-Length"]);
      }
      vdi = await createVdi(pool, { name_label: "Imported VDI", SR: sr, virtual_size: length });
    }
  } catch (error) {
    return failRequest(context, 404, toXapiFailure(error));
  }
  const record = pool.store.record("VDI", vdi);
  const location = record.location as string;
  const size = pool.disks.virtualSize(location);
  res.writeHead(200, { "task-id": task, "content-type": "application/octet-stream" });
  res.flushHeaders();
  try {
    await pool.tasks.withOperation("VDI", vdi, task, "import", () =>
      format === "raw" ? importRaw(context, location, size) : importVhd(context, location, size),
    );
    refreshUtilisation(pool, vdi);
    pool.tasks.complete(task, vdi);
    res.end();
  } catch (error) {
    const failure = error instanceof VhdError ? new XapiFailure("VDI_IO_ERROR", [error.message]) : toXapiFailure(error);
    failRequest(context, 500, failure);
  }
}
