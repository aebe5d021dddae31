/**
 * `PUT` of an upload (an /import, an /import_raw_vdi) to the pool master, under a XAPI task we watch ourselves.
 *
 * Why not xen-api's putResource: for a stream of unknown length it sends XAPI's 1 PiB Content-Length and, as soon as the body
 * is written, destroys the socket. XAPI has already answered (its early 200), so that close is a reset which can drop the
 * last bytes still in flight: the import then fails with VDI_IO_ERROR, which the client ignores by design; and when the
 * request errors (a cancel) it leaves the task's promise unobserved (an unhandled rejection). Here the connection stays open
 * until XAPI's task has ended, the task's result decides the outcome, and every promise is observed.
 */
import http from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import type { PoolConnection } from "./pool-connection.js";

/** XAPI's convention for an upload whose length is not known in advance. */
const UNKNOWN_LENGTH = "1125899906842624";

interface TaskClient {
  readonly sessionId: string;
  watchTask(ref: string): Promise<unknown>;
}

/** Resolves with XAPI's task result (the import's answer); rejects with XAPI's error when the task fails. */
export async function putWithTask(
  connection: PoolConnection,
  body: Readable & { length?: number },
  path: string,
  query: Record<string, string>,
  taskRef: string,
): Promise<unknown> {
  const xapi = connection.xapi as unknown as TaskClient;
  const result = xapi.watchTask(taskRef);
  result.catch(() => undefined); // awaited below
  const url = new URL(path, connection.baseUrl);
  for (const [key, value] of Object.entries({ ...query, session_id: xapi.sessionId, task_id: taskRef })) url.searchParams.set(key, value);
  const request = (url.protocol === "https:" ? https : http).request(url, {
    method: "PUT",
    agent: false,
    headers: { "content-length": body.length !== undefined ? String(body.length) : UNKNOWN_LENGTH },
    ...(url.protocol === "https:" ? { rejectUnauthorized: !connection.allowUnauthorized } : {}),
  });
  // A broken body (a cancel, a failed source) cuts the request: XAPI then fails its task, which is what we wait for.
  body.once("error", (error) => request.destroy(error));
  request.once("error", () => undefined); // reported through XAPI's task
  request.once("response", (response) => response.resume());
  if (body.length === undefined) {
    // With the 1 PiB convention the end of the data is the end of the stream: half-close (FIN) so XAPI sees it, while still
    // reading its answer (reading is what avoids the reset that would drop our last bytes).
    request.once("finish", () => request.socket?.end());
  }
  body.pipe(request);
  try {
    // XAPI's task ends when the import is complete or has failed (also when the upload broke): its result decides.
    return await result;
  } finally {
    request.destroy();
  }
}
