import { DISK_BLOCK_SIZE } from "./disk-store.js";
import { LabEndOfFile } from "./lab-byte-input.js";
import { failRequest, objectFromQuery, type HandlerContext } from "./http-context.js";
import { pacedImportBody } from "./import-faults.js";
import { LabVhdError, readUploadedVhd } from "./lab-vhd-reader.js";
import { createVdi, refreshUtilisation } from "./vdi-operations.js";
import { toXapiFailure, XapiFailure } from "./xapi-failure.js";

/** What XAPI reports for any failure of vhd-tool (ocaml/xapi/vhd_tool_wrapper.ml `run_vhd_tool`). */
const VHD_TOOL_FAILED = () => new XapiFailure("VDI_IO_ERROR", ["Device I/O errors"]);

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

/**
 * A VHD body, read by the lab's own reader as `vhd-tool serve` reads it, with the request's Content-Length as the
 * destination size (import_raw_vdi.ml passes `req.content_length` to `Vhd_tool_wrapper.receive`, which gives it as
 * `--destination-size`): the trailing footer is read at the last sector below it. A write beyond the disk fails as the
 * block device would.
 */
async function importVhd(context: HandlerContext, location: string, size: number): Promise<void> {
  const header = context.req.headers["content-length"];
  const length = header === undefined ? undefined : Number(header);
  for await (const item of readUploadedVhd(pacedImportBody(context.pool.faults, context.body), { size: length, deviceSize: size })) {
    context.pool.tasks.checkCancelled(context.task);
    if (item.kind === "sectors") {
      if (item.offset + item.data.length > size) {
        throw new LabVhdError(`a write of ${item.data.length} bytes at ${item.offset} is beyond the disk's ${size} bytes`);
      }
      await context.pool.disks.write(location, item.offset, item.data);
    }
  }
}

/**
 * `PUT /import_raw_vdi?vdi=|sr_id=&format=raw|vhd`, with XAPI's checks in XAPI's order (ocaml/xapi/import_raw_vdi.ml
 * `localhost_handler`): an unknown format, a `chunked` query with a non-raw format ("Cannot handle chunked VHD") and an
 * HTTP Transfer-Encoding ("Cannot handle encoding: …") answer 404 with `INTERNAL_ERROR`; without `vdi`, a raw body with
 * `sr_id` and a Content-Length creates an "Imported VDI" of that size, a VHD answers 400 ("Importing a VHD directly into
 * an SR not yet supported"), anything else 400 ("Not enough info supplied to import"). Then 200 headers, then the body:
 * raw, exactly `virtual_size` bytes; VHD, see {@link importVhd} (any failure is `VDI_IO_ERROR ["Device I/O errors"]`, as
 * vhd-tool's exit status is all XAPI sees). Result: the VDI ref.
 */
export async function handleImportRawVdi(context: HandlerContext): Promise<void> {
  const { pool, req, res, query, task } = context;
  const format = query.get("format") ?? "raw";
  let vdi: string | undefined;
  try {
    if (format !== "raw" && format !== "vhd") throw new XapiFailure("INTERNAL_ERROR", [`Unknown format ${format}`]);
    if (format !== "raw" && query.has("chunked")) throw new XapiFailure("INTERNAL_ERROR", ["Cannot handle chunked VHD"]);
    if (req.headers["transfer-encoding"] !== undefined) {
      throw new XapiFailure("INTERNAL_ERROR", [`Cannot handle encoding: ${req.headers["transfer-encoding"]}`]);
    }
  } catch (error) {
    return failRequest(context, 404, toXapiFailure(error));
  }
  try {
    vdi = objectFromQuery(pool, "VDI", query, ["vdi"]);
    if (vdi === undefined) {
      const sr = objectFromQuery(pool, "SR", query, ["sr_id"]);
      const length = Number(req.headers["content-length"]);
      if (format === "vhd") throw new XapiFailure("INTERNAL_ERROR", ["Importing a VHD directly into an SR not yet supported"]);
      if (sr === undefined || !Number.isSafeInteger(length))
        throw new XapiFailure("INTERNAL_ERROR", ["Not enough info supplied to import"]);
      vdi = await createVdi(pool, { name_label: "Imported VDI", SR: sr, virtual_size: length });
    }
  } catch (error) {
    return failRequest(context, 400, toXapiFailure(error));
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
    const vhdTool = error instanceof LabVhdError || error instanceof LabEndOfFile;
    if (vhdTool) pool.options.log(`import_raw_vdi of ${vdi}: vhd-tool would fail: ${(error as Error).message}`);
    failRequest(context, 500, vhdTool ? VHD_TOOL_FAILED() : toXapiFailure(error));
  }
}
