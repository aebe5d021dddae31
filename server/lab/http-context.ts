import type { IncomingMessage, ServerResponse } from "node:http";
import type { LabPool } from "./lab-pool.js";
import { XapiFailure } from "./xapi-failure.js";

/** What an HTTP handler (export, import, ...) works with once the request is authenticated. */
export interface HandlerContext {
  pool: LabPool;
  req: IncomingMessage;
  res: ServerResponse;
  query: URLSearchParams;
  session: string;
  /** The adopted `task_id`, or a task the handler created for itself. */
  task: string;
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return undefined;
}

/**
 * Authenticates as XAPI's HTTP handlers do (`xapi_http.ml`): `session_id` from the query or a cookie,
 * otherwise HTTP Basic credentials. On failure answers 401 and fails the given `task_id` with
 * `SESSION_AUTHENTICATION_FAILED`; returns undefined. Adopts `task_id`, or creates a task.
 */
export function authenticate(pool: LabPool, req: IncomingMessage, res: ServerResponse, query: URLSearchParams, label: string): HandlerContext | undefined {
  const taskId = query.get("task_id") ?? undefined;
  let session = query.get("session_id") ?? cookie(req, "session_id");
  if (session === undefined && req.headers.authorization?.startsWith("Basic ")) {
    const [user, ...password] = Buffer.from(req.headers.authorization.slice(6), "base64").toString().split(":");
    if (pool.sessions.checkCredentials(user, password.join(":"))) session = pool.sessions.login(user, password.join(":"));
  }
  if (session === undefined || !pool.sessions.isValid(session)) {
    if (taskId !== undefined && pool.store.has("task", taskId)) {
      pool.tasks.fail(taskId, new XapiFailure("SESSION_AUTHENTICATION_FAILED", [String(session), "invalid session for HTTP request"]));
    }
    res.writeHead(401, { "content-type": "text/plain", connection: "close" }).end("Unauthorized: give a valid session_id\n");
    return undefined;
  }
  const task = taskId !== undefined && pool.store.has("task", taskId) ? taskId : pool.tasks.create(label);
  return { pool, req, res, query, session, task };
}

/** Fails the handler's task and answers `status` with the failure as text (when headers are not sent yet). */
export function failRequest(context: HandlerContext, status: number, failure: XapiFailure): void {
  context.pool.tasks.fail(context.task, failure);
  if (!context.res.headersSent) {
    context.res.writeHead(status, { "content-type": "text/plain", connection: "close", "task-id": context.task });
    context.res.end(`${failure.message}\n`);
  } else {
    context.res.destroy();
  }
}

/** The object named by `<name>` (a ref) or `uuid` (or `<name>` holding a uuid), as XAPI's handlers accept. */
export function objectFromQuery(pool: LabPool, cls: "VM" | "VDI" | "SR", query: URLSearchParams, names: string[]): string | undefined {
  for (const name of names) {
    const value = query.get(name);
    if (value === null || value === "") continue;
    if (value.startsWith("OpaqueRef:")) return pool.store.get(cls, value).ref;
    return pool.store.byUuid(cls, value).ref;
  }
  return undefined;
}

/**
 * The request body as an async iterable whose early `return()` does not destroy the request: a payload
 * parser that stops at its own framing (tar trailer, VHD footer) must not reset the connection before the
 * response is written. What remains unread is drained. A connection cut by the client ends the body.
 */
export function detachedBody(req: IncomingMessage): AsyncIterable<Buffer> {
  const iterator = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  return {
    [Symbol.asyncIterator]: () => ({
      next: async () => {
        try {
          return await iterator.next();
        } catch (error) {
          // The client cuts the socket once it has sent everything (the 1 PiB Content-Length hack): end the
          // body here and let the payload's own framing say whether it was complete.
          if (req.complete || (error as NodeJS.ErrnoException).code === "ECONNRESET" || (error as Error).message === "aborted") {
            return { done: true, value: undefined };
          }
          throw error;
        }
      },
      return: async () => {
        req.resume();
        return { done: true, value: undefined };
      },
    }),
  };
}
