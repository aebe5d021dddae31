import { pipeline } from "node:stream/promises";
import { createXvaStream } from "../formats/xva/index.js";
import { exportFaultStream } from "./export-faults.js";
import { failRequest, objectFromQuery, type HandlerContext } from "./http-context.js";
import { buildVmExport } from "./ova-export.js";
import { checkNoConflict, checkPowerState } from "./vm-operations.js";
import { toXapiFailure, XapiFailure } from "./xapi-failure.js";

function compressionOf(value: string | null): "none" | "gzip" | "zstd" {
  if (value === "true" || value === "gzip") return "gzip";
  if (value === "zstd") return "zstd";
  return "none";
}

/**
 * `GET /export?ref=|uuid=&use_compression=`: the VM as an XVA (gzip for `true`/`gzip`, zstd for `zstd`),
 * close-delimited, with `task-id`; the VM carries `{task: "export"}` in `current_operations` meanwhile.
 * Halted or Suspended VMs (and snapshots) only.
 */
export async function handleExportXva(context: HandlerContext): Promise<void> {
  const { pool, query, res, task } = context;
  let vm: string | undefined;
  let document: ReturnType<typeof buildVmExport>;
  try {
    vm = objectFromQuery(pool, "VM", query, ["ref", "uuid"]);
    if (vm === undefined) throw new XapiFailure("INTERNAL_ERROR", ["missing ref or uuid parameter"]);
    checkPowerState(pool, vm, ["Halted", "Suspended"]);
    checkNoConflict(pool, vm, "export");
    document = buildVmExport(pool, vm);
  } catch (error) {
    return failRequest(context, 404, toXapiFailure(error));
  }
  const body = createXvaStream({ ova: document.ova, disks: document.disks, compression: compressionOf(query.get("use_compression")) });
  res.useChunkedEncodingByDefault = false;
  res.writeHead(200, {
    "task-id": task,
    connection: "close",
    "cache-control": "no-cache, no-store",
    "content-type": "application/octet-stream",
    "content-disposition": 'attachment; filename="export.xva"',
  });
  const cancel = (ref: string) => {
    if (ref === task) body.destroy(new XapiFailure("TASK_CANCELLED", [task]));
  };
  pool.tasks.on("cancel", cancel);
  try {
    await pool.tasks.withOperation("VM", vm, task, "export", () => pipeline(body, exportFaultStream(pool.faults), res));
    pool.tasks.complete(task);
  } catch (error) {
    failRequest(context, 500, toXapiFailure(error));
  } finally {
    pool.tasks.off("cancel", cancel);
  }
}
