/**
 * The second host of a two-host lab pool (LabOptions.memberAddress): its records (seed-pool.ts `addMemberHost`) and its own
 * HTTP server, at its own address and on the master's port number (a real pool's hosts all listen on 443, and xen-api
 * follows HOST_IS_SLAVE by changing the host name only, keeping the port). What it answers is in lab-hosts.ts.
 */
import { LabHttpServer, type LabTls } from "./http-server.js";
import type { LabPool } from "./pool-state.js";
import type { MethodTable } from "./rpc-method.js";
import { addMemberHost } from "./seed-pool.js";

export interface RunningMember {
  /** The member's `host.address`. */
  address: string;
  /** `http(s)://ADDRESS:PORT`. */
  url: string;
  /** Its host ref. */
  host: string;
  /** Every request it received, as "METHOD /path", oldest first (which host a client really talked to). */
  readonly requests: string[];
  stop(): Promise<void>;
}

export async function startMember(
  pool: LabPool,
  methods: MethodTable,
  options: { address: string; port: number; tls?: LabTls; seed: string; diskSizeBytes: number },
): Promise<RunningMember> {
  const host = await addMemberHost(pool, {
    address: options.address,
    seed: `${options.seed}-member`,
    diskSizeBytes: options.diskSizeBytes,
  });
  const server = new LabHttpServer(pool, methods, options.tls, host);
  const requests: string[] = [];
  server.server.prependListener("request", (req) => requests.push(`${req.method} ${new URL(req.url ?? "/", "http://lab").pathname}`));
  try {
    await server.listen(options.port, options.address);
  } catch (error) {
    throw new Error(
      `the lab's second host could not listen on ${options.address}:${options.port} (the master's port, at its own address): ${(error as Error).message}`,
      { cause: error },
    );
  }
  const shown = options.address.includes(":") ? `[${options.address}]` : options.address;
  return {
    address: options.address,
    url: `${options.tls ? "https" : "http"}://${shown}:${options.port}`,
    host,
    requests,
    stop: () => server.close(),
  };
}
