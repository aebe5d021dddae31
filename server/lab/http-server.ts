import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { Socket } from "node:net";
import { handleExportRawVdi } from "./export-raw-vdi-handler.js";
import { handleExportXva } from "./export-xva-handler.js";
import { authenticate, hasValidSession, type HandlerContext } from "./http-context.js";
import { handleImportRawVdi } from "./import-raw-vdi-handler.js";
import { handleImportXva } from "./import-xva-handler.js";
import { handleJsonRpc } from "./jsonrpc-handler.js";
import { handleDatabaseDump, handleDatabaseRestore } from "./pool-database-handler.js";
import { answerAsMember, answerRedirect, redirectAddress } from "./lab-hosts.js";
import type { LabPool } from "./pool-state.js";
import type { MethodTable } from "./rpc-method.js";
import { handleXmlRpc } from "./xmlrpc-handler.js";

type Handler = (context: HandlerContext) => Promise<void>;

/** PEM key and certificate for a lab that serves HTTPS. */
export interface LabTls {
  key: string | Buffer;
  cert: string | Buffer;
}

// First path segment → handlers by method. Exact segments, so /import_raw_vdi/ never reaches /import (XAPI matches
// the longest prefix to the same effect); `pool` has its own second segment.
const HTTP_HANDLERS: Record<string, Partial<Record<string, Handler>>> = {
  export: { GET: handleExportXva },
  export_raw_vdi: { GET: handleExportRawVdi },
  import: { PUT: handleImportXva },
  import_raw_vdi: { PUT: handleImportRawVdi },
  "pool/xmldbdump": { GET: handleDatabaseDump, PUT: handleDatabaseRestore },
};

/** The key of HTTP_HANDLERS a path falls under ("" when none). */
function handlerKey(pathname: string): string {
  const segments = pathname.split("/").filter((part) => part !== "");
  return segments[0] === "pool" ? segments.slice(0, 2).join("/") : (segments[0] ?? "");
}

/**
 * An HTTP server for one pool: `POST /jsonrpc` (JSON-RPC) and `POST /` (XML-RPC) over the same `methods`, and the
 * export/import handlers, with the host faults.
 */
export class LabHttpServer {
  readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly rpcInFlight = new Set<Promise<void>>();
  private closing = false;

  constructor(
    private readonly pool: LabPool,
    private readonly methods: MethodTable,
    /** Serve HTTPS with this key and certificate (a real pool's self-signed one), as XAPI does on port 443. */
    tls?: LabTls,
    /**
     * The host this server plays (its ref): a member answers API calls with HOST_IS_SLAVE and serves only the transfers of
     * SRs it sees (lab-hosts.ts). Undefined: the pool's master.
     */
    private readonly host?: string,
  ) {
    const handle = (req: IncomingMessage, res: ServerResponse) => void this.route(req, res);
    this.server = tls ? createTlsServer({ key: tls.key, cert: tls.cert }, handle) : createServer(handle);
    this.server.on("connection", (socket: Socket) => {
      if (pool.faults.isUnreachable()) {
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
    });
  }

  async listen(port: number, host: string): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const address = this.server.address();
    if (address === null || typeof address === "string") throw new Error("lab server has no TCP address");
    return address.port;
  }

  /**
   * Stops accepting, lets the RPC calls in flight send their answers (the pool answers its long polls first),
   * then cuts every connection (exports included) and waits for the server to close. A call that arrives meanwhile
   * on a kept-alive connection is answered too, with `connection: close`, so that no client sees a reset.
   */
  async close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    while (this.rpcInFlight.size > 0) await Promise.allSettled([...this.rpcInFlight]);
    this.dropConnections();
    await closed;
  }

  private isMember(): boolean {
    return this.host !== undefined && this.host !== this.pool.store.record("pool", this.pool.poolRef).master;
  }

  dropConnections(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /** Keeps a call in `rpcInFlight` until its answer is written, so that `close()` lets pending long polls answer. */
  private async trackRpc(res: ServerResponse, call: Promise<void>): Promise<void> {
    // A response whose client went away (a socket destroyed by the client's time-out) may have closed before the call
    // settles: its "close" event is then already past, and waiting for it would hold close() forever (Node 24 closes the
    // response as soon as its socket goes; Node 20 only later).
    const settled = call.then(
      () =>
        new Promise<void>((resolve) =>
          res.writableFinished || res.closed || res.destroyed
            ? resolve()
            : (res.once("finish", () => resolve()), res.once("close", () => resolve())),
        ),
    );
    this.rpcInFlight.add(settled);
    void settled.finally(() => this.rpcInFlight.delete(settled));
    await call;
  }

  private afterRpc(method: string, params: unknown[]): void {
    if (method === "lab.set_fault" && params[1] === "host_unreachable") this.dropConnections();
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.pool.faults.isUnreachable()) {
      req.socket.destroy();
      return;
    }
    try {
      const url = new URL(req.url ?? "/", "http://lab");
      const segment = handlerKey(url.pathname);
      if (req.method === "POST" && !Object.hasOwn(HTTP_HANDLERS, segment)) {
        // XAPI routes by path, not by Content-Type: `/jsonrpc` is JSON-RPC, and `/` (so `/RPC2`, `/xmlrpc`, any path
        // without a handler of its own, by longest-prefix match) is XML-RPC.
        const handle = segment === "jsonrpc" ? handleJsonRpc : handleXmlRpc;
        if (this.closing) res.setHeader("connection", "close");
        if (this.isMember()) {
          await this.trackRpc(res, answerAsMember(this.pool, req, res, segment === "jsonrpc" ? "json" : "xml"));
          return;
        }
        await this.trackRpc(
          res,
          handle(this.pool, this.methods, req, res, (method, params) => this.afterRpc(method, params)),
        );
        return;
      }
      const handler = Object.hasOwn(HTTP_HANDLERS, segment) ? HTTP_HANDLERS[segment]![req.method ?? ""] : undefined;
      if (handler === undefined) {
        res.writeHead(404, { "content-type": "text/plain", connection: "close" }).end(`no handler for ${req.method} ${url.pathname}\n`);
        return;
      }
      // Credentials first, then the SR's host (import_raw_vdi.ml `import`, import.ml, export*.ml): 302 to a host that sees it.
      if (hasValidSession(this.pool, req, url.searchParams)) {
        const elsewhere = redirectAddress(this.pool, this.host ?? this.pool.hostRef, segment, url.searchParams);
        if (elsewhere !== undefined) {
          answerRedirect(req, res, elsewhere);
          return;
        }
      }
      // The client's probe PUT (empty body, no task_id) only checks for a redirection: answer, touch nothing.
      if (req.method === "PUT" && req.headers["content-length"] === "0" && !url.searchParams.has("task_id")) {
        res.writeHead(200, { "content-type": "text/plain" }).end();
        return;
      }
      const context = authenticate(this.pool, req, res, url.searchParams, `Lab ${req.method} ${url.pathname}`);
      if (context !== undefined) await handler(context);
    } catch (error) {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain", connection: "close" }).end(`${String(error)}\n`);
      else res.destroy(error as Error);
    }
  }
}
