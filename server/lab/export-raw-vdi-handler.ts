import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createVhdStream } from "../formats/vhd/index.js";
import { exportFaultStream } from "./export-faults.js";
import { failRequest, objectFromQuery, type HandlerContext } from "./http-context.js";
import { toXapiFailure, XapiFailure } from "./xapi-failure.js";

const RAW_CHUNK = 1024 * 1024;

/** XAPI's `Constants.max_vhd_size` (ocaml/xapi-consts/constants.ml): 2040 GiB, the largest disk a VHD can describe. */
export const MAX_VHD_SIZE = 2040 * 1024 ** 3;

/**
 * SR types whose VDIs tapdisk opens with its `vhd` driver (the SMAPIv1 file and LVM drivers: ext, nfs, lvm (LVHD), ...).
 * A VDI elsewhere (`udev`, `rawhba`, ...), or one made raw with `sm_config:type=raw` (tapdisk's `aio` driver, e.g. a raw
 * LV on an LVM SR), is not VHD-based: XAPI can export it but not compute a difference against it.
 */
const VHD_SR_TYPES = new Set([
  "ext",
  "nfs",
  "lvm",
  "lvmoiscsi",
  "lvmohba",
  "lvmofcoe",
  "file",
  "smb",
  "xfs",
  "zfs",
  "largeblock",
  "linstor",
]);

export function isVhdBased(pool: HandlerContext["pool"], vdi: string): boolean {
  const record = pool.store.record("VDI", vdi);
  const sr = pool.store.record("SR", record.SR as string);
  return VHD_SR_TYPES.has(String(sr.type)) && (record.sm_config as Record<string, string> | undefined)?.type !== "raw";
}

/**
 * The checks XAPI makes after it has sent its 200 headers (export_raw_vdi.ml `localhost_handler`, then
 * vhd_tool_wrapper.ml `send`): `format=vhd` above 2040 GiB fails `VDI_TOO_LARGE [vdi, max]`; a `base` with a VDI that is
 * not VHD-based fails with the `Failure` vhd_tool_wrapper raises, which XAPI reports as `INTERNAL_ERROR
 * [Printexc.to_string e]` (exnHelper.ml). The client sees a 200 and an empty, close-delimited body.
 */
function failureAfterHeaders(context: HandlerContext, vdi: string, base: string | undefined, format: string): XapiFailure | undefined {
  const { pool } = context;
  if (format === "vhd" && pool.disks.virtualSize(pool.store.record("VDI", vdi).location as string) > MAX_VHD_SIZE) {
    return new XapiFailure("VDI_TOO_LARGE", [vdi, String(MAX_VHD_SIZE)]);
  }
  if (base === undefined) return undefined;
  if (!isVhdBased(pool, vdi)) return new XapiFailure("INTERNAL_ERROR", ['Failure("Cannot compute differences on non-VHD images")']);
  if (!isVhdBased(pool, base)) {
    return new XapiFailure("INTERNAL_ERROR", [
      'Failure("Vhd_tool_wrapper.send: base VDI is not a vhd; cannot compute differences: Driver mismatch {expected=vhd; actual=aio}")',
    ]);
  }
  return undefined;
}
const ZERO_CHUNK = Buffer.alloc(RAW_CHUNK);

async function* rawContent(context: HandlerContext, location: string): AsyncGenerator<Buffer> {
  const { disks } = context.pool;
  const size = disks.virtualSize(location);
  for (let offset = 0; offset < size; offset += RAW_CHUNK) {
    context.pool.tasks.checkCancelled(context.task);
    const length = Math.min(RAW_CHUNK, size - offset);
    yield disks.isHole(location, offset, length) ? ZERO_CHUNK.subarray(0, length) : await disks.read(location, offset, length);
  }
}

/**
 * `GET /export_raw_vdi?vdi=&format=raw|vhd[&base=]`: the VDI's content, raw or as a dynamic VHD of its
 * allocated blocks; with `base` a differencing VHD of only the blocks that differ from `base` (block
 * identity in the disk store: the cost is the changed data, not the disk size). Close-delimited body,
 * `task-id` header, the task completed with `""` at the end or failed if the transfer breaks.
 */
export async function handleExportRawVdi(context: HandlerContext): Promise<void> {
  const { pool, query, res, task } = context;
  let vdi: string | undefined;
  let base: string | undefined;
  try {
    vdi = objectFromQuery(pool, "VDI", query, ["vdi"]);
    base = objectFromQuery(pool, "VDI", query, ["base"]);
  } catch (error) {
    return failRequest(context, 404, toXapiFailure(error));
  }
  if (vdi === undefined) return failRequest(context, 404, new XapiFailure("INTERNAL_ERROR", ["missing vdi parameter"]));
  const format = query.get("format") ?? "raw";
  if (format !== "raw" && format !== "vhd")
    return failRequest(context, 404, new XapiFailure("INTERNAL_ERROR", [`Unknown format ${format}`]));
  const record = pool.store.record("VDI", vdi);
  const location = record.location as string;
  const lateFailure = failureAfterHeaders(context, vdi, base, format);
  if (lateFailure !== undefined) {
    res.useChunkedEncodingByDefault = false;
    res.writeHead(200, {
      "task-id": task,
      connection: "close",
      "cache-control": "no-cache, no-store",
      "content-type": format === "raw" ? "application/octet-stream" : "application/vhd",
      "content-disposition": `attachment; filename="${String(record.uuid)}.${format}"`,
    });
    res.flushHeaders();
    return failRequest(context, 500, lateFailure);
  }
  let body: Readable;
  if (format === "raw") {
    body = Readable.from(rawContent(context, location), { objectMode: false });
  } else {
    const baseRecord = base === undefined ? undefined : pool.store.record("VDI", base);
    const blockIndexes =
      baseRecord === undefined ? pool.disks.allocatedBlocks(location) : pool.disks.changedBlocks(location, baseRecord.location as string);
    const blockCount = blockIndexes.length;
    let done = 0;
    body = createVhdStream({
      virtualSize: pool.disks.virtualSize(location),
      uuid: record.uuid as string,
      parent: baseRecord === undefined ? undefined : { uuid: baseRecord.uuid as string, name: `${String(baseRecord.uuid)}.vhd` },
      blockIndexes,
      blocks: (async function* () {
        for (const index of blockIndexes) {
          pool.tasks.checkCancelled(task);
          yield { index, data: await pool.disks.readBlock(location, index) };
          pool.tasks.setProgress(task, ++done / blockCount);
        }
      })(),
      creatorApplication: "caml",
    });
  }
  res.useChunkedEncodingByDefault = false;
  res.writeHead(200, {
    "task-id": task,
    connection: "close",
    "cache-control": "no-cache, no-store",
    "content-type": format === "raw" ? "application/octet-stream" : "application/vhd",
    "content-disposition": `attachment; filename="${String(record.uuid)}.${format}"`,
  });
  try {
    await pool.tasks.withOperation("VDI", vdi, task, "export", () => pipeline(body, exportFaultStream(pool.faults), res));
    pool.tasks.complete(task);
  } catch (error) {
    failRequest(context, 500, toXapiFailure(error));
  }
}
