/**
 * Several Cairn processes on one test database, as an operator runs them (README "Several instances"): one CAIRN_ROLE=api
 * process with the lab in it, and workers (CAIRN_ROLE=worker), each a child process (`node --import tsx server/main.ts`) that
 * can be killed with SIGKILL. They share DATA_DIR (the lab's local remote lives there) and SECRET_KEY (sealed pool passwords).
 * Used by test/foundation/cluster-roles.test.ts and bench/cluster.ts.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type Xapi } from "xen-api";
import { createPrismaClient, type Db } from "../../server/db/prisma.js";
import { DISK_BLOCK_SIZE } from "../../server/lab/disk-store.js";
import { createTestDatabase, type TestDatabase } from "./database.js";
import { eventually } from "./eventually.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const CLUSTER_ADMIN_PASSWORD = "cluster-admin";

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface ClusterProcess {
  name: string;
  role: "api" | "worker";
  url: string;
  readonly pid: number | undefined;
  readonly running: boolean;
  output(): string;
  /** kill -9; resolves with how it ended. */
  kill(): Promise<{ code: number | null; signal: string | null }>;
  /** SIGTERM, and waits for the exit (SIGKILL after a minute: a hang guard only). */
  stop(): Promise<void>;
}

export interface CairnCluster {
  db: Db;
  dataDir: string;
  api: ClusterProcess;
  workers: ClusterProcess[];
  /** ws:// address of the api process's graphql-ws endpoint. */
  wsUrl: string;
  token: string;
  gql<T = any>(query: string, variables?: Record<string, unknown>): Promise<T>;
  /** A xen-api client on the lab pool the api process serves. */
  xapi: Xapi;
  /** Starts one more worker. */
  startWorker(): Promise<ClusterProcess>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  workers?: number;
  labDiskMb?: number;
  /** WORKER_VMS of each worker. */
  workerVms?: number;
  logLevel?: string;
  /** The database of the cluster (empty or migrated: the api migrates it). @default a test database (vitest only) */
  database?: () => Promise<{ url: string; drop(): Promise<void> }>;
  /** Runs once the api and the lab are up, before any worker starts (workers connect to the pools as they are then). */
  prepare?: (cluster: Pick<CairnCluster, "xapi" | "gql" | "db">) => Promise<void>;
}

export async function startCairnCluster(options: ClusterOptions = {}): Promise<CairnCluster> {
  const database: Pick<TestDatabase, "url" | "drop"> = await (options.database ?? createTestDatabase)();
  const db = createPrismaClient(database.url);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "cairn-cluster-"));
  fs.chmodSync(dataDir, 0o755);
  const secretKey = randomBytes(32);
  const processes: ClusterProcess[] = [];
  const common: Record<string, string> = {
    DATA_DIR: dataDir,
    DATABASE_URL: database.url,
    SECRET_KEY: secretKey.toString("hex"),
    ADMIN_PASSWORD: CLUSTER_ADMIN_PASSWORD,
    HOST: "127.0.0.1",
    LOG_LEVEL: options.logLevel ?? "info",
  };
  const labPort = await freePort();
  let workerCount = 0;

  const startProcess = async (name: string, role: "api" | "worker", env: Record<string, string>): Promise<ClusterProcess> => {
    const port = await freePort();
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(
        ([key]) =>
          !/^(DATABASE_URL|ADMIN_PASSWORD|SECRET_KEY|LAB.*|PORT|HOST|DATA_DIR|LOG_LEVEL|CAIRN_ROLE|WORKER_VMS|TLS.*|VITEST.*|NODE_OPTIONS)$/.test(
            key,
          ),
      ),
    );
    let output = "";
    const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", "server/main.ts"], {
      cwd: REPO,
      env: { ...inherited, ...common, ...env, CAIRN_ROLE: role, PORT: String(port), TLS: "off" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (chunk) => (output += chunk));
    child.stderr!.on("data", (chunk) => (output += chunk));
    let exit: { code: number | null; signal: string | null } | undefined;
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve((exit = { code, signal }))),
    );
    const url = `http://127.0.0.1:${port}`;
    const alive = () => child.exitCode === null && child.signalCode === null;
    const proc: ClusterProcess = {
      name,
      role,
      url,
      get pid() {
        return child.pid;
      },
      get running() {
        return alive();
      },
      output: () => output,
      async kill() {
        if (alive()) child.kill("SIGKILL");
        return exited;
      },
      async stop() {
        if (!alive()) return;
        child.kill("SIGTERM");
        const hang = setTimeout(() => child.kill("SIGKILL"), 60_000);
        await exited.finally(() => clearTimeout(hang));
      },
    };
    processes.push(proc);
    // Readiness has no event to wait on from outside the process: /healthz is asked until it answers (bounded).
    const exitedEarly = new Error("exited before it was ready");
    await eventually(
      `${name}'s /healthz to answer ok`,
      async () => {
        if (exit) throw Object.assign(exitedEarly, { message: `${name} exited (${JSON.stringify(exit)}) before it was ready:\n${output}` });
        const health = await fetch(`${url}/healthz`)
          .then((r) => r.json() as Promise<{ status?: string }>)
          .catch(() => undefined);
        if (health?.status !== "ok") throw new Error(`${name} is not ready yet; output so far:\n${output.slice(-4000)}`);
      },
      { timeoutMs: 120_000, intervalMs: 100, stopWhen: (error) => error === exitedEarly },
    );
    return proc;
  };

  const startWorker = () => startProcess(`worker ${++workerCount}`, "worker", { LAB: "off", WORKER_VMS: String(options.workerVms ?? 4) });

  let token = "";
  let xapi: Xapi | undefined;
  const stop = async () => {
    await xapi?.disconnect().catch(() => undefined);
    // Workers first: a worker stopping ends its runs, which needs no api; the api (and the lab in it) last.
    await Promise.all(processes.filter((p) => p.role === "worker").map((p) => p.stop()));
    await Promise.all(processes.filter((p) => p.role === "api").map((p) => p.stop()));
    await db.$disconnect();
    await database.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  };

  try {
    const api = await startProcess("api", "api", { LAB: "on", LAB_PORT: String(labPort), LAB_DISK_MB: String(options.labDiskMb ?? 16) });
    const gql = async <T>(query: string, variables?: Record<string, unknown>): Promise<T> => {
      const response = await fetch(`${api.url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await response.json()) as { data?: T; errors?: unknown };
      if (body.errors) throw new Error(`GraphQL error: ${JSON.stringify(body.errors)}`);
      return body.data as T;
    };
    token = (
      await gql<{ login: { token: string } }>("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }", {
        u: "admin",
        p: CLUSTER_ADMIN_PASSWORD,
      })
    ).login.token;
    // The lab's password derives from the secret key (server/app.ts).
    const labPassword = createHmac("sha256", secretKey).update("cairn-lab").digest("base64url").slice(0, 24);
    xapi = createClient({ url: `http://127.0.0.1:${labPort}`, auth: { user: "root", password: labPassword }, eventPollDelay: 500 }) as Xapi;
    await xapi.connect();
    await xapi.objectsFetched;
    await options.prepare?.({ xapi, gql, db });
    // After the api registered the lab pool: a worker connects to the pools known when it starts.
    const workers: ClusterProcess[] = [];
    for (let i = 0; i < (options.workers ?? 2); i++) workers.push(await startWorker());
    return {
      db,
      dataDir,
      api,
      workers,
      wsUrl: `${api.url.replace(/^http/, "ws")}/graphql`,
      token,
      gql,
      xapi,
      startWorker,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * `count` lab VMs for a cluster's jobs: clones of the seeded Halted VM, each disk filled with its own random bytes (so that
 * every backup moves the whole disk). Resolves with their uuids once the api process's pool connection sees them.
 */
export async function cloneLabVms(cluster: Pick<CairnCluster, "xapi" | "gql">, count: number, prefix: string): Promise<string[]> {
  const { xapi } = cluster;
  await xapi.barrier();
  const source = Object.values(xapi.objects.all).find((o) => o.$type === "VM" && o.name_label === "win-fat" && !o.is_a_snapshot)!;
  const uuids: string[] = [];
  for (let i = 0; i < count; i++) {
    const ref = (await xapi.call("VM.clone", source.$ref, `${prefix}-${i + 1}`)) as string;
    await xapi.barrier();
    const vm = xapi.getObjectByRef(ref);
    for (const vbdRef of vm.VBDs as string[]) {
      const vbd = xapi.getObjectByRef(vbdRef);
      if (vbd.type !== "Disk") continue;
      const vdi = xapi.getObjectByRef(vbd.VDI as string);
      const blocks = Math.ceil(Number(vdi.virtual_size) / DISK_BLOCK_SIZE);
      await xapi.call("lab.scribble", vbd.VDI, blocks, `${prefix}-${i}`);
    }
    uuids.push(vm.uuid as string);
  }
  await eventually(
    "the api process to see the new VMs",
    async () => {
      const { vms } = await cluster.gql<{ vms: { uuid: string }[] }>("{ vms { uuid } }");
      const seen = new Set(vms.map((v) => v.uuid));
      if (!uuids.every((u) => seen.has(u))) throw new Error("not all VMs are visible yet");
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  return uuids;
}
