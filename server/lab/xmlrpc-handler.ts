import type { IncomingMessage, ServerResponse } from "node:http";
import { internalErrorPage, readRpcBody } from "./jsonrpc-handler.js";
import type { LabPool } from "./pool-state.js";
import { dispatch } from "./rpc-dispatch.js";
import type { MethodTable } from "./rpc-method.js";
import { toXapiFailure } from "./xapi-failure.js";
import { formatMethodResponse, type MethodCall, parseMethodCall, XmlRpcParseError } from "./xmlrpc-codec.js";
import { jsonLikeParams, xmlRpcTypedResult } from "./xmlrpc-types.js";

function send(res: ServerResponse, text: string): void {
  res.writeHead(200, { "content-type": "text/xml", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/**
 * `POST /` (and any POST path but `/jsonrpc`, as XAPI's longest-prefix match sends them to its `/` handler): one
 * XML-RPC call through the same dispatch as JSON-RPC. The answer is always HTTP 200 with XAPI's struct,
 * `{Status: "Success", Value}` or `{Status: "Failure", ErrorDescription: [code, ...params]}`; `system.listMethods`
 * answers the bare array, as XAPI does. A body that is not a `<methodCall>` gets XAPI's HTTP 500 page.
 * Calls `afterResponse` once the reply is sent.
 */
export async function handleXmlRpc(
  pool: LabPool,
  methods: MethodTable,
  req: IncomingMessage,
  res: ServerResponse,
  afterResponse: (method: string, params: unknown[]) => void,
): Promise<void> {
  const text = await readRpcBody(req);
  let call: MethodCall;
  try {
    if (text === undefined) throw new XmlRpcParseError("request body too large");
    call = parseMethodCall(text);
  } catch (error) {
    if (!(error instanceof XmlRpcParseError)) throw error;
    res.writeHead(500, { "content-type": "text/html", connection: "close", "cache-control": "no-cache, no-store" });
    res.end(internalErrorPage(`Xmlrpc.Parse_error: ${error.message}`));
    return;
  }
  const params = jsonLikeParams(call.method, call.params);
  res.once("finish", () => afterResponse(call.method, params));
  try {
    const result = await dispatch(pool, methods, call.method, params);
    const value = xmlRpcTypedResult(call.method, result === undefined ? "" : result);
    send(res, formatMethodResponse(call.method === "system.listMethods" ? value : { Status: "Success", Value: value }));
  } catch (error) {
    send(res, formatMethodResponse({ Status: "Failure", ErrorDescription: toXapiFailure(error).toErrorInfo() }));
  }
}
