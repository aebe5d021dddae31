/**
 * A private nfs-ganesha (VFS FSAL, NFSv3 over TCP only) exporting a fresh temp folder, for tests.
 *
 * Several of these run at once (test files run in parallel, each may start its own). What that takes:
 * - Ports: every listener ganesha opens gets a free port of its own (`NFS_Port`, `MNT_Port`, and `NLM_Port` / `Rquota_Port`,
 *   which are set even though NLM and RQUOTA are disabled, so that no default such as 875 is ever bound twice). Ports are
 *   found by binding port 0 and closing it; a port taken again in the meantime makes ganesha exit at start, and the start
 *   is retried with new ports.
 * - `Bind_addr = 127.0.0.1`: nothing listens beyond this machine.
 * - `Protocols = 3` (no NFSv4, so no v4 recovery state or grace period to share), `Enable_UDP = false` (UDP listeners would
 *   be registered with the portmapper on fixed defaults), `Enable_NLM = false`, `Enable_RQUOTA = false`.
 * - rpcbind is a system-wide daemon that ganesha registers with at start (it exits without it). It is started here once if
 *   nothing answers on 127.0.0.1:111, and never stopped. Registration is last-wins: with several instances running,
 *   `rpcinfo -p` shows the ports of the latest one, and an instance that stops unregisters the programs whoever registered
 *   them. So clients of these peers are given the ports (the `options.mountPort` below and the port in `location`) and never
 *   ask the portmapper; a test of PORTMAP itself must tolerate that (or register its own entries).
 * - `Dbus_Name_Prefix` per instance (two instances on one system bus would claim the same name), its own pid file, log file,
 *   v4 recovery root and Kerberos credential cache folder (`NFS_KRB5 { Active_krb5 = false; CCacheDir }`), all in the
 *   instance's temp folder: nothing under /var is written.
 * - `mount_path_pseudo = true`, so that MOUNT takes the export's pseudo path (`/export`) rather than the folder's real path.
 * - `Squash = No_Root_Squash`: the tests speak AUTH_SYS as uid 0 by default, and as other uids to provoke permission errors.
 *
 * ganesha.nfsd needs root (the VFS FSAL opens files by handle, which takes CAP_DAC_READ_SEARCH); tests run as root here
 * and in CI. Readiness is a condition: an RPC NULL call answered on the NFS and the MOUNT port, never a fixed sleep.
 * A second export, `/readonly` (Access_Type = RO), serves `readOnlyFolder`, so tests can provoke NFS3ERR_ROFS.
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually } from "../support/eventually.js";
import { skipReasonForTools } from "../support/system-tools.js";

/** A running ganesha, as {@link startGanesha} gives it. */
export interface GaneshaPeer {
  host: string;
  nfsPort: number;
  mountPort: number;
  /** The export's path as the location names it (`/export`). */
  exportPath: string;
  /** The exported folder on this machine, to look at what the server really stored. */
  folder: string;
  /** `nfs://127.0.0.1:PORT/export`, the location of an NFS remote on this export. */
  location: string;
  /** The options an NFS remote needs besides the location: `{ mountPort, uid, gid }`. */
  options: Record<string, unknown>;
  /** `nfs://127.0.0.1:PORT/readonly`: an export with Access_Type = RO (writes fail with NFS3ERR_ROFS). */
  readOnlyLocation: string;
  /** The folder behind the read-only export. */
  readOnlyFolder: string;
  stop(): Promise<void>;
}

/** The outside tools the NFS tests need; under CI=true a missing one fails instead of skipping. */
export const GANESHA_TOOLS = ["ganesha.nfsd", "rpcbind", "nfs-cp", "nfs-ls"];

/** Why NFS tests cannot run here (a missing tool, or not root), or undefined. Throws under CI instead of skipping. */
export function ganeshaSkipReason(): string | undefined {
  const missing = skipReasonForTools(GANESHA_TOOLS);
  if (missing !== undefined) return missing;
  if (process.getuid?.() !== 0) {
    const reason = "needs root to run ganesha.nfsd (its VFS backend opens files by handle)";
    if (process.env.CI === "true") throw new Error(`CI must not skip: ${reason}`);
    console.warn(`SKIPPED: ${reason}`);
    return reason;
  }
  return undefined;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function tcpAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * One ONC RPC NULL call (RFC 5531: procedure 0, AUTH_NONE) over TCP with record marking; resolves when it is accepted.
 * Kept here rather than taken from the client under test, so the peer's readiness does not depend on that client.
 */
export function rpcNull(port: number, program: number, version: number, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let settled = false;
    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error === undefined) resolve();
      else reject(error);
    };
    const timer = setTimeout(() => finish(new Error(`RPC NULL to port ${port} not answered in ${timeoutMs} ms`)), timeoutMs);
    const call = Buffer.alloc(4 + 40);
    call.writeUInt32BE((0x80000000 | 40) >>> 0, 0);
    const words = [0x4e554c4c, 0, 2, program, version, 0, 0, 0, 0, 0];
    words.forEach((word, index) => call.writeUInt32BE(word, 4 + index * 4));
    let received = Buffer.alloc(0);
    socket.once("connect", () => socket.write(call));
    socket.on("data", (chunk) => {
      received = Buffer.concat([received, chunk]);
      // Record mark, xid, msg_type, reply_stat, verifier flavor and length, verifier body, accept_stat.
      if (received.length < 16) return;
      const [xid, type, replyStat] = [received.readUInt32BE(4), received.readUInt32BE(8), received.readUInt32BE(12)];
      const acceptAt = received.length >= 24 ? 24 + received.readUInt32BE(20) : Number.POSITIVE_INFINITY;
      if (replyStat === 0 && received.length < acceptAt + 4) return;
      const acceptStat = replyStat === 0 ? received.readUInt32BE(acceptAt) : -1;
      if (xid === 0x4e554c4c && type === 1 && replyStat === 0 && acceptStat === 0) finish();
      else finish(new Error(`RPC NULL to port ${port} refused (reply ${replyStat}, accept ${acceptStat})`));
    });
    socket.on("error", (error) => finish(error));
    socket.on("close", () => finish(new Error(`port ${port} closed the connection before answering RPC NULL`)));
  });
}

let rpcbindReady: Promise<void> | undefined;

/** Starts the system's rpcbind unless something already answers on port 111. Never stopped: other users may rely on it. */
function ensureRpcbind(): Promise<void> {
  rpcbindReady ??= (async () => {
    if (await tcpAnswers(111)) return;
    // rpcbind forks into the background itself; a concurrent start by another test file fails to bind, which is fine.
    const child = spawn("rpcbind", ["-w"], { stdio: "ignore", detached: true });
    child.unref();
    child.once("error", () => {});
    await eventually("rpcbind to answer on 127.0.0.1:111", async () => {
      await rpcNull(111, 100000, 2);
    });
  })();
  rpcbindReady.catch(() => {
    rpcbindReady = undefined;
  });
  return rpcbindReady;
}

function config(base: string, ports: { nfs: number; mount: number; nlm: number; rquota: number }): string {
  const exportBlock = (id: number, folder: string, pseudo: string, access: string) => [
    "EXPORT {",
    `  Export_Id = ${id};`,
    `  Path = ${folder};`,
    `  Pseudo = ${pseudo};`,
    `  Access_Type = ${access};`,
    "  Squash = No_Root_Squash;",
    "  Protocols = 3;",
    "  Transports = TCP;",
    "  SecType = sys;",
    "  FSAL { Name = VFS; }",
    "}",
  ];
  return [
    "NFS_CORE_PARAM {",
    "  Protocols = 3;",
    "  Bind_addr = 127.0.0.1;",
    `  NFS_Port = ${ports.nfs};`,
    `  MNT_Port = ${ports.mount};`,
    `  NLM_Port = ${ports.nlm};`,
    `  Rquota_Port = ${ports.rquota};`,
    "  Enable_NLM = false;",
    "  Enable_RQUOTA = false;",
    "  Enable_UDP = false;",
    "  mount_path_pseudo = true;",
    `  Dbus_Name_Prefix = cairn${ports.nfs};`,
    "}",
    `NFS_KRB5 { Active_krb5 = false; CCacheDir = ${join(base, "ccache")}; }`,
    `NFSv4 { Graceless = true; RecoveryRoot = ${join(base, "recovery")}; }`,
    ...exportBlock(1, join(base, "export"), "/export", "RW"),
    ...exportBlock(2, join(base, "readonly"), "/readonly", "RO"),
    "",
  ].join("\n");
}

/** Starts ganesha once with fresh ports; rejects (leaving nothing running) if it exits or does not answer. */
async function startOnce(base: string): Promise<GaneshaPeer> {
  const ports = { nfs: await freePort(), mount: await freePort(), nlm: await freePort(), rquota: await freePort() };
  const configFile = join(base, "ganesha.conf");
  const logFile = join(base, `ganesha-${ports.nfs}.log`);
  await writeFile(configFile, config(base, ports));
  const child = spawn("ganesha.nfsd", ["-F", "-f", configFile, "-L", logFile, "-p", join(base, "ganesha.pid"), "-N", "NIV_EVENT"], {
    stdio: ["ignore", "ignore", "pipe"],
    cwd: base,
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("error", () => {});
  const logTail = async () => `${stderr}${(await readFile(logFile, "utf8").catch(() => "")).slice(-3000)}`;
  const exitedError = new Error("ganesha.nfsd exited");
  try {
    await eventually(
      `ganesha on ports ${ports.nfs}/${ports.mount} to answer RPC NULL`,
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw exitedError;
        await rpcNull(ports.nfs, 100003, 3);
        await rpcNull(ports.mount, 100005, 3);
      },
      { timeoutMs: 60_000, intervalMs: 100, stopWhen: (error) => error === exitedError },
    );
  } catch (error) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    throw new Error(`${(error as Error).message}\n${await logTail()}`);
  }
  const host = "127.0.0.1";
  return {
    host,
    nfsPort: ports.nfs,
    mountPort: ports.mount,
    exportPath: "/export",
    folder: join(base, "export"),
    location: `nfs://${host}:${ports.nfs}/export`,
    options: { mountPort: ports.mount, uid: 0, gid: 0 },
    readOnlyLocation: `nfs://${host}:${ports.nfs}/readonly`,
    readOnlyFolder: join(base, "readonly"),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      // Only bounds a hang of ganesha's own shutdown.
      const hang = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(hang);
      await rm(base, { recursive: true, force: true });
    },
  };
}

/**
 * Starts a private ganesha exporting a fresh, empty temp folder as `/export` (read-write, uid 0 not squashed) and another
 * as `/readonly`. Call `stop()` in afterAll: it stops ganesha and removes every file it used.
 */
export async function startGanesha(): Promise<GaneshaPeer> {
  await ensureRpcbind();
  const base = await mkdtemp(join(tmpdir(), "cairn-ganesha-"));
  await Promise.all(["export", "readonly", "recovery", "ccache"].map((folder) => mkdir(join(base, folder))));
  let lastError: unknown;
  // A free port can be taken by someone else between the probe and ganesha's bind: try again with new ones.
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return await startOnce(base);
    } catch (error) {
      lastError = error;
    }
  }
  await rm(base, { recursive: true, force: true });
  throw lastError;
}
