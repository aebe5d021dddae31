import { failRequest, objectFromQuery, type HandlerContext } from "./http-context.js";
import { LabEndOfFile } from "./lab-byte-input.js";
import { pacedImportBody } from "./import-faults.js";
import { LabXvaUpload } from "./lab-xva-reader.js";
import { createImportedObjects, finishImport, undoImport, type ImportedObjects } from "./ova-import.js";
import { refreshUtilisation } from "./vdi-operations.js";
import { toXapiFailure, XapiFailure } from "./xapi-failure.js";

/**
 * `PUT /import?sr_id=|sr_uuid=`: an XVA (plain, gzip or zstd) creating new VMs on the SR (default: the pool's default
 * SR), read by the lab's own XVA reader as XAPI reads it (lab-xva-reader.ts). Chunked transfer encoding is refused (403,
 * `IMPORT_ERROR_CANNOT_HANDLE_CHUNKED`). The 200 headers go out before the body is read (the client waits for them before
 * finishing its upload). The task ends from the archive's own framing (the disks' sizes, then both zero blocks of the tar
 * trailer; a compressed XVA, the end of its compressed stream too), so a client cutting the socket after a complete
 * archive (the 1 PiB Content-Length hack) still succeeds, and a body cut anywhere fails `IMPORT_ERROR_PREMATURE_EOF` with
 * what it created removed. Result: the XML-RPC array of the new VM refs.
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
  const upload = new LabXvaUpload(pacedImportBody(pool.faults, context.body));
  try {
    const ova = await upload.readOva();
    pool.tasks.checkCancelled(task);
    imported = await createImportedObjects(pool, ova, sr, task);
    const disks = new Map(
      [...imported.disks].map(([id, { location }]) => [
        id,
        { size: pool.disks.virtualSize(location), write: (offset: number, data: Buffer) => pool.disks.write(location, offset, data) },
      ]),
    );
    await upload.receiveDisks(ova, disks, () => pool.tasks.checkCancelled(task));
    await upload.finish();
    for (const { vdi } of imported.disks.values()) refreshUtilisation(pool, vdi);
    finishImport(pool, imported);
    pool.tasks.complete(task, imported.vms);
    res.end();
  } catch (error) {
    if (imported !== undefined) await undoImport(pool, imported);
    const failure = error instanceof LabEndOfFile ? new XapiFailure("IMPORT_ERROR_PREMATURE_EOF", []) : toXapiFailure(error);
    if (!(error instanceof XapiFailure)) pool.options.log(`import of an XVA failed: ${(error as Error).message}`);
    failRequest(context, 500, failure);
  } finally {
    upload.close();
  }
}
