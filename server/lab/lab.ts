import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { LabHttpServer, type LabTls } from "./http-server.js";
import { flushCbtState } from "./cbt-state.js";
import { createMethodTable, openLabPool } from "./lab-pool.js";
import { recordHostCertificate } from "./host-certificates.js";
import { type RunningMember, startMember } from "./lab-member.js";
import { LabNbdServer } from "./nbd-server.js";
import type { LabPool } from "./pool-state.js";

export interface LabOptions {
  /** Folder for the pool's state and disks; kept between runs, it keeps the pool (and its disk image cache). */
  dir: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /** @default "127.0.0.1" */
  host?: string;
  /** @default "root" */
  user?: string;
  /** @default "lab" */
  password?: string;
  /** Seeds disk content and MACs; the same seed gives the same content. @default "cairn" */
  seed?: string;
  /** Virtual size of each seeded VM disk. @default 8 MiB */
  diskSizeBytes?: number;
  /** @default "lab" */
  poolName?: string;
  /** Where warnings go (a missing mkfs tool, ...). @default console.warn */
  log?: (message: string) => void;
  /** The longest an idle `event.from` is held, whatever the client asked (XAPI holds it the asked timeout). */
  eventFromMaxWaitMs?: number;
  /** The XAPI version the host presents (`API_version_major/minor`), to play an older pool. @default 2.21 (XenServer 8) */
  apiVersion?: { major: number; minor: number };
  /** Serve HTTPS (PEM key and certificate) instead of HTTP, as a real pool does (for certificate pinning tests). */
  tls?: LabTls;
  /**
   * Makes the pool a two-host pool: a member host at this address (e.g. "127.0.0.2"), on the master's port, with its own
   * local SR and a VM on it (lab-member.ts, README "Two hosts").
   */
  memberAddress?: string;
  /** The member's own certificate when the lab serves TLS (each host of a real pool has its own). @default tls */
  memberTls?: LabTls;
}

/** A lab pool serving XAPI over HTTP. */
export interface RunningLab {
  /** `http://HOST:PORT`, for `createClient({ url, auth: { user, password } })`. */
  url: string;
  port: number;
  user: string;
  password: string;
  poolName: string;
  /** The pool behind the server, for in-process inspection (tests should prefer the `lab.*` methods). */
  pool: LabPool;
  /** The second host, with `memberAddress`. */
  member?: RunningMember;
  /** Answers pending long polls, cuts connections, saves state. */
  stop(): Promise<void>;
}

export const DEFAULT_DISK_SIZE = 8 * 1024 * 1024;

/**
 * Starts a simulated pool (see server/lab/README.md). State in `dir` survives a restart; a fresh `dir` is
 * seeded (the ext4 and FAT images are built once and cached in `dir/../image-cache`).
 */
export async function startLab(options: LabOptions): Promise<RunningLab> {
  const host = options.host ?? "127.0.0.1";
  const user = options.user ?? "root";
  const password = options.password ?? "lab";
  const poolName = options.poolName ?? "lab";
  const dir = resolve(options.dir);
  await mkdir(dir, { recursive: true });
  const pool = await openLabPool({
    dir: join(dir, "pool"),
    user,
    password,
    poolName,
    hostAddress: host,
    seed: options.seed ?? "cairn",
    diskSizeBytes: options.diskSizeBytes ?? DEFAULT_DISK_SIZE,
    log: options.log ?? ((message) => console.warn(message)),
  });
  pool.events.maxWaitMs = options.eventFromMaxWaitMs;
  if (options.apiVersion !== undefined) {
    const { major, minor } = options.apiVersion;
    for (const host of pool.store.all("host")) {
      pool.store.update("host", host.ref, (record) => {
        record.API_version_major = major;
        record.API_version_minor = minor;
      });
    }
  }
  const methods = createMethodTable();
  const server = new LabHttpServer(pool, methods, options.tls);
  let port: number;
  try {
    port = await server.listen(options.port, host);
  } catch (error) {
    await pool.close();
    throw new Error(`lab could not listen on ${host}:${options.port}: ${(error as Error).message}`, { cause: error });
  }
  // The host's NBD server (xapi-nbd), on a port of its own; VDI.get_nbd_info names it.
  const nbd = new LabNbdServer(pool, options.tls);
  try {
    await nbd.listen(0, host);
  } catch (error) {
    await server.close();
    await pool.close();
    throw new Error(`lab could not start its NBD server on ${host}: ${(error as Error).message}`, { cause: error });
  }
  if (options.tls) {
    const master = pool.store.all("pool")[0]?.record.master;
    if (typeof master === "string") recordHostCertificate(pool, master, options.tls.cert);
  }
  let member: RunningMember | undefined;
  if (options.memberAddress !== undefined) {
    try {
      const { seed = "cairn", diskSizeBytes = DEFAULT_DISK_SIZE } = options;
      const memberTls = options.memberTls ?? options.tls;
      member = await startMember(pool, methods, { address: options.memberAddress, port, tls: memberTls, seed, diskSizeBytes });
      if (memberTls) recordHostCertificate(pool, member.host, memberTls.cert);
    } catch (error) {
      await nbd.close();
      await server.close();
      await pool.close();
      throw error;
    }
  }
  let stopping: Promise<void> | undefined;
  return {
    member,
    url: `${options.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    user,
    password,
    poolName,
    pool,
    stop: () => {
      // Concurrent stop() calls share one shutdown.
      stopping ??= (async () => {
        // Sessions end with the lab: waiting event.from calls answer SESSION_INVALID before connections close.
        pool.sessions.invalidateAll();
        pool.events.close();
        await nbd.close();
        await member?.stop();
        await server.close();
        await flushCbtState(pool);
        await pool.close();
      })();
      return stopping;
    },
  };
}

/**
 * Starts `count` independent pools named `poolName`, `poolName-2`, ... in `dir/pool-1`, `dir/pool-2`, ...;
 * with a fixed port, pool i listens on `port + i - 1`.
 */
export async function startLabPools(count: number, options: LabOptions): Promise<RunningLab[]> {
  if (!Number.isInteger(count) || count < 1) throw new Error(`lab pool count must be a positive integer, got ${count}`);
  const labs: RunningLab[] = [];
  try {
    for (let i = 1; i <= count; i++) {
      const name = options.poolName ?? "lab";
      labs.push(
        await startLab({
          ...options,
          dir: join(options.dir, `pool-${i}`),
          port: options.port === 0 ? 0 : options.port + i - 1,
          poolName: i === 1 ? name : `${name}-${i}`,
          seed: `${options.seed ?? "cairn"}${i === 1 ? "" : `-${i}`}`,
        }),
      );
    }
  } catch (error) {
    await Promise.all(labs.map((lab) => lab.stop()));
    throw error;
  }
  return labs;
}
