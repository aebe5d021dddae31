/**
 * `GET /pool/xmldbdump` and `PUT /pool/xmldbdump[?dry_run=true]`: a pool's metadata backup and restore, as
 * ocaml/xapi/pool_db_backup.ml serves them (`pull_database_backup_handler`, `push_database_restore_handler`). Both answer
 * 200 before any work (XAPI sends its headers first), so a failure shows on the task (`task_id`), not in the status code,
 * and the connection closes. A restore that is not a dry run is applied when the answer has gone, as XAPI restarts on the
 * received database after its fuse: sessions end, and clients log in again to see the restored objects.
 */
import { XAPI_CLASSES } from "./class-defaults.js";
import type { HandlerContext } from "./http-context.js";
import { databaseXml, parseDatabaseXml } from "./pool-database-dump.js";
import { toXapiFailure, XapiFailure } from "./xapi-failure.js";

/** A dump larger than this is refused rather than held in memory (the lab's biggest pools dump a few MiB). */
const MAX_DUMP_BYTES = 256 * 1024 * 1024;

const KNOWN_CLASSES: ReadonlySet<string> = new Set(XAPI_CLASSES);

export async function handleDatabaseDump(context: HandlerContext): Promise<void> {
  const { pool, res, task } = context;
  res.writeHead(200, {
    "task-id": task,
    connection: "close",
    "content-type": "application/octet-stream",
    "cache-control": "no-cache, no-store",
  });
  const xml = databaseXml(pool.store.snapshot());
  await new Promise<void>((resolve) => res.end(xml, () => resolve()));
  pool.tasks.complete(task);
}

export async function handleDatabaseRestore(context: HandlerContext): Promise<void> {
  const { pool, res, task, query, body } = context;
  res.writeHead(200, { "task-id": task, connection: "close", "content-type": "text/plain" });
  const dryRun = query.get("dry_run") === "true";
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += chunk.length;
      if (size > MAX_DUMP_BYTES) throw new XapiFailure("INTERNAL_ERROR", [`The database dump is larger than ${MAX_DUMP_BYTES} bytes.`]);
      chunks.push(chunk);
    }
    const restored = parseDatabaseXml(Buffer.concat(chunks).toString("utf8"), KNOWN_CLASSES);
    pool.tasks.complete(task);
    await new Promise<void>((resolve) => res.end(() => resolve()));
    if (!dryRun) pool.restoreDatabase(restored);
  } catch (error) {
    pool.tasks.fail(task, toXapiFailure(error));
    res.end();
  }
}
