/**
 * A pool's database as XAPI serves it (`GET /pool/xmldbdump`, ocaml/xapi/pool_db_backup.ml) and takes it back
 * (`PUT /pool/xmldbdump`). Cairn keeps the dump as opaque bytes: it never reads inside it.
 */
import { PassThrough, type Readable } from "node:stream";
import { cancellableUpload } from "../../xapi/put-with-task.js";
import { describeXapiError, isNetworkError, type PoolConnection } from "../../xapi/pool-connection.js";

interface ResourceClient {
  getResource(path: string, options: { query: Record<string, string> }): Promise<{ body: Readable; task?: Promise<unknown> }>;
}

export const POOL_DATABASE_PATH = "/pool/xmldbdump";

/** The pool's uuid (its `pool` object), the name its folder on a remote takes. */
export function poolUuidOf(connection: PoolConnection): string | undefined {
  const pool = connection.records("pool")[0];
  return typeof pool?.uuid === "string" ? pool.uuid : undefined;
}

/**
 * Streams the pool's database dump. `done` settles with XAPI's task: XAPI answers 200 before it works, so a failure shows
 * only there (a body cut short looks complete to HTTP).
 */
export async function downloadPoolDatabase(connection: PoolConnection): Promise<{ body: Readable; done: Promise<void> }> {
  const client = connection.xapi as unknown as ResourceClient;
  let response: { body: Readable; task?: Promise<unknown> };
  try {
    response = await client.getResource(POOL_DATABASE_PATH, { query: {} });
  } catch (error) {
    throw isNetworkError(error) ? connection.unreachable(error) : new Error(`XAPI refused the database dump: ${describeXapiError(error)}`);
  }
  const done = (response.task ?? Promise.resolve()).then(
    () => undefined,
    (error: unknown) => {
      throw new Error(`XAPI's database dump of ${connection.displayName} failed: ${describeXapiError(error)}`);
    },
  );
  done.catch(() => undefined); // observed by the caller
  const body = new PassThrough();
  response.body.on("error", (error) => body.destroy(isNetworkError(error) ? connection.unreachable(error) : error));
  response.body.pipe(body);
  return { body, done };
}

/**
 * Sends a database dump back to the pool. XAPI checks it, answers, then restarts on it (the toolstack restart ends every
 * session: Cairn's connection reconnects by itself).
 */
export async function uploadPoolDatabase(
  connection: PoolConnection,
  body: Readable & { length?: number },
  signal: AbortSignal,
): Promise<void> {
  await cancellableUpload(connection, {
    path: POOL_DATABASE_PATH,
    query: {},
    body,
    taskName: "Cairn: restore pool metadata",
    taskDescription: "The pool's database, from a metadata backup",
    what: "database restore",
    stoppedPrefix: "the database restore was stopped",
    signal,
  });
}
