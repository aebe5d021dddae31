import type { IncomingMessage, ServerResponse } from "node:http";
import type { LabPool } from "./pool-state.js";
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
  /**
   * A PUT's body ({@link detachedBody}), taken over as soon as the request is authenticated, before the handler's first
   * await: bytes that arrive before the handler reads them are kept even if the client closes meanwhile. Empty otherwise.
   */
  body: AsyncIterable<Buffer>;
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return undefined;
}

/** Whether the request carries a valid session (query, cookie) or valid Basic credentials, without side effects. */
export function hasValidSession(pool: LabPool, req: IncomingMessage, query: URLSearchParams): boolean {
  const session = query.get("session_id") ?? cookie(req, "session_id");
  if (session !== undefined && pool.sessions.isValid(session)) return true;
  if (!req.headers.authorization?.startsWith("Basic ")) return false;
  const [user, ...password] = Buffer.from(req.headers.authorization.slice(6), "base64").toString().split(":");
  return pool.sessions.checkCredentials(user, password.join(":"));
}

/**
 * Authenticates as XAPI's HTTP handlers do (`xapi_http.ml`): `session_id` from the query or a cookie,
 * otherwise HTTP Basic credentials. On failure answers 401 and fails the given `task_id` with
 * `SESSION_AUTHENTICATION_FAILED`; returns undefined. Adopts `task_id`, or creates a task. Synchronous (see `body`).
 */
export function authenticate(
  pool: LabPool,
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
  label: string,
): HandlerContext | undefined {
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
  const body = req.method === "PUT" ? detachedBody(req) : (async function* empty(): AsyncGenerator<Buffer> {})();
  return { pool, req, res, query, session, task, body };
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
 * The request body as an async iterable that hands out every byte the client sent, then ends.
 *
 * Node's HTTP server destroys a request whose connection ends before its Content-Length is reached (the client's FIN
 * after a body sent with XAPI's 1 PiB Content-Length, a reset, a dropped connection), and a destroyed stream throws away
 * what it had received but not handed out yet: the last bytes of an upload, arrived while the import was busy (writing a
 * chunk), would vanish, and a complete upload would look cut (an XVA short of its tar trailer). So those bytes are taken
 * out of the request first, by listeners on the socket's `end` and `close` that run before the server's own; the body
 * ends after them, and the payload's own framing says whether it was complete.
 *
 * An early `return()` does not destroy the request (a payload parser that stops at its own framing must not reset the
 * connection before the response is written): what remains unread is drained.
 */
export function detachedBody(req: IncomingMessage): AsyncIterable<Buffer> {
  const socket = req.socket;
  const rescued: Buffer[] = [];
  let cut = false;
  let released = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const rescue = () => {
    if (cut) return;
    cut = true;
    if (!req.destroyed)
      for (let chunk = req.read() as Buffer | null; chunk !== null; chunk = req.read() as Buffer | null) rescued.push(chunk);
    notify();
  };
  socket.prependListener("end", rescue);
  socket.prependListener("close", rescue);
  req.on("readable", notify);
  req.on("end", notify);
  req.on("close", notify);
  const detach = () => {
    socket.off("end", rescue);
    socket.off("close", rescue);
    req.off("readable", notify);
    req.off("end", notify);
    req.off("close", notify);
  };
  const end = (): IteratorResult<Buffer> => {
    detach();
    return { done: true, value: undefined };
  };
  return {
    [Symbol.asyncIterator]: () => ({
      next: async () => {
        for (;;) {
          if (released) return end();
          const kept = rescued.shift();
          if (kept !== undefined) return { done: false, value: kept };
          // Cut by the client (or destroyed): everything it sent has been handed out.
          if (cut || req.destroyed) return end();
          const chunk = req.read() as Buffer | null;
          if (chunk !== null) return { done: false, value: chunk };
          if (req.readableEnded) return end();
          await new Promise<void>((resolve) => (wake = resolve));
        }
      },
      return: async () => {
        released = true;
        detach();
        notify();
        req.resume();
        return { done: true, value: undefined };
      },
    }),
  };
}
