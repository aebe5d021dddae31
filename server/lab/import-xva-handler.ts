import { readXva, XvaError } from "../formats/xva/index.js";
import { failRequest, objectFromQuery, type HandlerContext } from "./http-context.js";
import { pacedImportBody } from "./import-faults.js";
import { createImportedObjects, finishImport, undoImport, type ImportedObjects } from "./ova-import.js";
import { refreshUtilisation } from "./vdi-operations.js";
import { toXapiFailure, XapiFailure } from "./xapi-failure.js";
import { XvaUpload } from "./xva-upload.js";

/**
 * `PUT /import?sr_id=|sr_uuid=`: an XVA (plain, gzip or zstd) creating new VMs on the SR (default: the
 * pool's default SR). Chunked transfer encoding is refused (403, `IMPORT_ERROR_CANNOT_HANDLE_CHUNKED`).
 * The 200 headers go out before the body is read (the client waits for them before finishing its upload).
 * The task ends from the tar framing (both zero blocks of the trailer; a compressed XVA, the end of its compressed
 * stream too), so a client cutting the socket after a complete archive (the 1 PiB Content-Length hack) still succeeds,
 * and a body cut anywhere fails `IMPORT_ERROR_PREMATURE_EOF` with what it created removed. Result: the XML-RPC array
 * of the new VM refs.
 */
export async function handleImportXva(context: HandlerContext): Promise<void> {
  const { pool, req, res, query, task } = context;
  if (req.headers["transfer-encoding"] !== undefined) {
    return failRequest(context, 403, new XapiFailure("IMPORT_ERROR_CANNOT_HANDLE_CHUNKED", []));
  }
  let sr: string;
  try {
    sr = objectFromQuery(pool, "SR", query, ["sr_id", "sr_uuid"]) ?? pool.defaultSr;
    if (!pool.store.has("SR", sr)) throw new XapiFailure("DEFAULT_SR_NOT_FOUND", [sr]);
  } catch (error) {
    return failRequest(context, 404, toXapiFailure(error));
  }
  res.writeHead(200, { "task-id": task, "content-type": "application/octet-stream" });
  res.flushHeaders();
  let imported: ImportedObjects | undefined;
  let complete = false;
  const upload = new XvaUpload(pacedImportBody(pool.faults, context.body));
  try {
    for await (const item of readXva(upload.tar, "import")) {
      pool.tasks.checkCancelled(task);
      if (item.kind === "ova") {
        imported = await createImportedObjects(pool, item.ova, sr, task);
      } else if (item.kind === "chunk") {
        const disk = imported?.disks.get(item.ref);
        if (disk === undefined) throw new XapiFailure("IMPORT_ERROR", [`chunk ${item.ref}/${item.counter} belongs to no VDI of ova.xml`]);
        if (item.data.length > 0) await pool.disks.write(disk.location, item.offset, item.data);
      } else {
        complete = true;
        break;
      }
    }
    if (!complete || imported === undefined) throw new XapiFailure("IMPORT_ERROR_PREMATURE_EOF", []);
    await upload.finish();
    for (const { vdi } of imported.disks.values()) refreshUtilisation(pool, vdi);
    finishImport(pool, imported);
    pool.tasks.complete(task, imported.vms);
    res.end();
  } catch (error) {
    if (imported !== undefined) await undoImport(pool, imported);
    const failure =
      error instanceof XvaError
        ? new XapiFailure(error.code === "XVA_TRUNCATED" ? "IMPORT_ERROR_PREMATURE_EOF" : "IMPORT_ERROR", [error.message])
        : toXapiFailure(error);
    failRequest(context, 500, failure);
  } finally {
    upload.close();
  }
}
