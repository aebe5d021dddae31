import type { IncomingMessage, ServerResponse } from "node:http";
import type { LabPool } from "./pool-state.js";
import { dispatch } from "./rpc-dispatch.js";
import type { MethodTable } from "./rpc-method.js";
import { toXapiFailure } from "./xapi-failure.js";

/** `lab.write_vdi` carries base64 data: requests up to this size are accepted. */
const MAX_BODY = 96 * 1024 * 1024;

/** The whole body of an RPC request as text, or undefined past {@link MAX_BODY} (both transports). */
export async function readRpcBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** XAPI's HTTP 500 page for a request it could not parse (`Http_svr`), with `detail` as its additional information. */
export function internalErrorPage(detail: string): string {
  const escaped = detail.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  return `<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; please wait a while and try again. If the problem persists, please contact your support representative.<h1> Additional information </h1>${escaped}</body></html>`;
}

function send(res: ServerResponse, body: unknown): void {
  // Exactly "application/json": with a charset the client believes JSON-RPC is unsupported.
  const text = JSON.stringify(body);
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/**
 * `POST /jsonrpc`: one JSON-RPC call. Success `{jsonrpc, result, id}`; failure `{jsonrpc, error: {code: 1,
 * message: CODE, data: [params]}, id}`; JSON-RPC 1.0 requests (no `jsonrpc`) get 1.0 replies. A malformed
 * body gets HTTP 500 with an HTML body, as XAPI answers. Calls `afterResponse` once the reply is sent.
 */
export async function handleJsonRpc(
  pool: LabPool,
  methods: MethodTable,
  req: IncomingMessage,
  res: ServerResponse,
  afterResponse: (method: string, params: unknown[]) => void,
): Promise<void> {
  const text = await readRpcBody(req);
  let request: { jsonrpc?: unknown; method?: unknown; params?: unknown; id?: unknown };
  try {
    request = JSON.parse(text ?? "") as typeof request;
    if (typeof request !== "object" || request === null || typeof request.method !== "string") throw new Error("no method");
  } catch {
    res.writeHead(500, { "content-type": "text/html", connection: "close" });
    res.end(internalErrorPage("Malformed JSON-RPC request"));
    return;
  }
  const method = request.method as string;
  const params = Array.isArray(request.params) ? request.params : [];
  const id = typeof request.id === "number" || typeof request.id === "string" ? request.id : null;
  const v2 = request.jsonrpc === "2.0";
  res.once("finish", () => afterResponse(method, params));
  try {
    const result = await dispatch(pool, methods, method, params);
    const value = result === undefined ? "" : result;
    send(res, v2 ? { jsonrpc: "2.0", result: value, id } : { result: value, error: null, id });
  } catch (error) {
    const failure = toXapiFailure(error);
    send(
      res,
      v2
        ? { jsonrpc: "2.0", error: { code: 1, message: failure.code, data: failure.params }, id }
        : { result: null, error: failure.toErrorInfo(), id },
    );
  }
}
