/**
 * The hosts of a multi-host lab pool, as XAPI routes requests between them:
 * - a member answers every API call with `HOST_IS_SLAVE [master address]` (xapi_session.ml `login_with_password`: "if
 *   Pool_role.is_slave () then raise host_is_slave [get_master_address ()]"; session_check.ml raises the same for a pool
 *   session used on a member), so a client follows to the master;
 * - the transfer handlers serve a request only on a host that sees the SR(s) involved, and otherwise answer 302 to the
 *   address of a host that does, with the same path and query (session_id and task_id included, the task left pending for
 *   that host): import_raw_vdi.ml `import`, export_raw_vdi.ml `export_raw`, import.ml `handler` ("sr not available -
 *   redirecting"), export.ml `handler` (`check_vm_host_SRs`), all through importexport.ml `check_sr_availability` /
 *   `find_host_for_sr` / `return_302_redirect`. A host sees an SR when it has an attached PBD of it.
 * XAPI's redirect is `https://<address><path>?<query>` (port 443 implied). The lab's hosts listen on one port number at
 * different addresses, so its Location carries that port and the scheme the lab serves; nothing else differs.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { readRpcBody } from "./jsonrpc-handler.js";
import type { LabPool } from "./pool-state.js";
import { formatMethodResponse } from "./xmlrpc-codec.js";

/** The master's `host.address`, as `Pool_role.get_master_address` gives it. */
export function masterAddress(pool: LabPool): string {
  const master = pool.store.record("pool", pool.poolRef).master as string;
  return String(pool.store.record("host", master).address);
}

function canSee(pool: LabPool, host: string, sr: string): boolean {
  return (pool.store.record("SR", sr).PBDs as string[]).some((pbd) => {
    if (!pool.store.has("PBD", pbd)) return false;
    const record = pool.store.record("PBD", pbd);
    return record.host === host && record.currently_attached === true;
  });
}

function refOf(pool: LabPool, cls: "VM" | "VDI" | "SR", query: URLSearchParams, names: string[]): string | undefined {
  for (const name of names) {
    const value = query.get(name);
    if (value === null || value === "") continue;
    const found = value.startsWith("OpaqueRef:")
      ? pool.store.has(cls, value)
        ? value
        : undefined
      : pool.store.all(cls).find((object) => object.record.uuid === value)?.ref;
    return found;
  }
  return undefined;
}

/** The SRs a transfer needs, found from its query as XAPI's handlers find them; undefined when they cannot be told (the handler then answers the error). */
function srsOfTransfer(pool: LabPool, handler: string, query: URLSearchParams): string[] | undefined {
  const srOfVdi = (vdi: string | undefined) => (vdi === undefined ? undefined : [pool.store.record("VDI", vdi).SR as string]);
  switch (handler) {
    case "export_raw_vdi":
      return srOfVdi(refOf(pool, "VDI", query, ["vdi"]));
    case "import_raw_vdi": {
      const vdi = refOf(pool, "VDI", query, ["vdi"]);
      if (vdi !== undefined) return srOfVdi(vdi);
      const sr = refOf(pool, "SR", query, ["sr_id"]);
      return sr === undefined ? undefined : [sr];
    }
    case "import": {
      const sr = refOf(pool, "SR", query, ["sr_id", "sr_uuid"]) ?? pool.defaultSr;
      return pool.store.has("SR", sr) ? [sr] : undefined;
    }
    case "export": {
      const vm = refOf(pool, "VM", query, ["ref", "uuid"]);
      if (vm === undefined) return undefined;
      const srs = new Set<string>();
      for (const vbd of pool.store.record("VM", vm).VBDs as string[]) {
        const vdi = pool.store.has("VBD", vbd) ? (pool.store.record("VBD", vbd).VDI as string) : undefined;
        if (vdi !== undefined && pool.store.has("VDI", vdi)) srs.add(pool.store.record("VDI", vdi).SR as string);
      }
      return [...srs];
    }
    default:
      return undefined;
  }
}

/**
 * Where `host` sends a transfer request: undefined when it serves it itself (it sees every SR involved, or no host does:
 * the handler then runs here and fails as it would), else the address of the first host that sees them all.
 */
export function redirectAddress(pool: LabPool, host: string, handler: string, query: URLSearchParams): string | undefined {
  const srs = srsOfTransfer(pool, handler, query);
  if (srs === undefined || srs.every((sr) => canSee(pool, host, sr))) return undefined;
  // Xapi_vm_helpers.choose_host ~prefer_slaves:false: the master is tried first.
  const master = pool.store.record("pool", pool.poolRef).master as string;
  const hosts = [master, ...pool.store.all("host").map((object) => object.ref)].filter((ref, i, all) => all.indexOf(ref) === i);
  const chosen = hosts.find((candidate) => candidate !== host && srs.every((sr) => canSee(pool, candidate, sr)));
  return chosen === undefined ? undefined : String(pool.store.record("host", chosen).address);
}

/** Answers `302 Location: <scheme>://<address>:<port><path>?<query>` as `Importexport.return_302_redirect` does. */
export function answerRedirect(req: IncomingMessage, res: ServerResponse, address: string): void {
  const incoming = new URL(req.url ?? "/", "http://lab");
  const scheme = (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http";
  const host = address.includes(":") ? `[${address}]` : address;
  const location = `${scheme}://${host}:${req.socket.localPort}${incoming.pathname}${incoming.search}`;
  res.writeHead(302, { location, connection: "close", "content-length": 0 }).end();
}

/**
 * A member's answer to any API call: `HOST_IS_SLAVE [master address]`, in the transport's own failure shape (JSON-RPC
 * error / XML-RPC `Failure` struct).
 */
export async function answerAsMember(pool: LabPool, req: IncomingMessage, res: ServerResponse, transport: "json" | "xml"): Promise<void> {
  const text = (await readRpcBody(req)) ?? "";
  const errorInfo = ["HOST_IS_SLAVE", masterAddress(pool)];
  if (transport === "xml") {
    const body = formatMethodResponse({ Status: "Failure", ErrorDescription: errorInfo });
    res.writeHead(200, { "content-type": "text/xml", "content-length": Buffer.byteLength(body) }).end(body);
    return;
  }
  let request: { jsonrpc?: unknown; id?: unknown } = {};
  try {
    request = JSON.parse(text) as typeof request;
  } catch {
    // An unreadable call gets the same answer: the member would not run it anyway.
  }
  const id = typeof request.id === "number" || typeof request.id === "string" ? request.id : null;
  const body = JSON.stringify(
    request.jsonrpc === "2.0"
      ? { jsonrpc: "2.0", error: { code: 1, message: errorInfo[0], data: errorInfo.slice(1) }, id }
      : { result: null, error: errorInfo, id },
  );
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
}
