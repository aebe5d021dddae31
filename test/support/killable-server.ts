/**
 * For crash tests: a Cairn server run as a child process (`node --import tsx server/main.ts`, as `npm start` runs it) with
 * the lab in it, on a test database the test can read and its own DATA_DIR, so that it can be killed with SIGKILL and
 * started again on the same state (the lab comes back from DATA_DIR/lab).
 *
 * `labOutside`: the lab runs in a process of its own that a kill of Cairn does not touch, as a real pool outlives the
 * backup server: what XAPI was doing for the dead process (an import reading what it had sent) goes on, and nothing the
 * pool recorded is lost with Cairn. Cairn connects to it as to any pool, with a local remote named "local".
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type Xapi } from "xen-api";
import { createPrismaClient, type Db } from "../../server/db/prisma.js";
import { createEventBus, type EventBus } from "../../server/events/event-bus.js";
import { createLogger } from "../../server/log.js";
import { RUN_FIELDS } from "./backup-fixture.js";
import { createTestDatabase, type TestDatabase } from "./database.js";
import { eventually } from "./eventually.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const ADMIN_PASSWORD = "killable-admin";
const READY_LIMIT_MS = 90_000;
export const ENDED = new Set(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface KillableCairn {
  db: Db;
  dataDir: string;
  /** A xen-api client on the lab (reconnected by each `start()`). */
  readonly xapi: Xapi;
  /** Starts (or restarts) the server, signs in and connects the lab client. */
  start(): Promise<void>;
  /** Whether the server process is up. */
  readonly running: boolean;
  /** kill -9 of the server; resolves once it is gone, with how it ended. */
  kill(): Promise<unknown>;
  gql<T = any>(query: string, variables?: Record<string, unknown>): Promise<T>;
  /** Resolves with the run once `predicate` holds, re-reading it at each of its events (Postgres NOTIFY, across processes). */
  waitForRun(runId: string, predicate: (run: any) => boolean, timeoutMs?: number): Promise<any>;
  runToEnd(jobId: string, scheduleId: string): Promise<any>;
  stop(): Promise<void>;
}

/** The lab as `npm run lab` runs it, in its own process; resolves once it serves. */
async function startOutsideLab(dir: string, diskMb: number): Promise<{ url: string; password: string; stop(): Promise<void> }> {
  const port = await freePort();
  const password = "killable-lab";
  const lab = spawn(process.execPath, ["--import", "tsx", "server/lab/main.ts"], {
    cwd: REPO,
    env: { ...process.env, LAB_PORT: String(port), LAB_DIR: dir, LAB_DISK_MB: String(diskMb), LAB_PASSWORD: password },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = new Promise<void>((resolve) => lab.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk;
      if (output.includes("lab pool")) resolve();
    };
    lab.stdout!.on("data", onData);
    lab.stderr!.on("data", (chunk) => (output += chunk));
    void exited.then(() => reject(new Error(`the lab exited before it served:\n${output}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    password,
    async stop() {
      if (lab.exitCode === null && lab.signalCode === null) lab.kill("SIGTERM");
      await exited;
    },
  };
}

export async function startKillableCairn(options: { labDiskMb?: number; labOutside?: boolean } = {}): Promise<KillableCairn> {
  const database: TestDatabase = await createTestDatabase();
  const db = createPrismaClient(database.url);
  const events: EventBus = await createEventBus(database.url, createLogger("warn"));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "cairn-killable-"));
  fs.chmodSync(dataDir, 0o755);
  const env: Record<string, string> = {
    DATA_DIR: dataDir,
    DATABASE_URL: database.url,
    ADMIN_PASSWORD,
    PORT: String(await freePort()),
    LAB: options.labOutside ? "off" : "on",
    LAB_PORT: String(await freePort()),
    LAB_DISK_MB: String(options.labDiskMb ?? 64),
    LOG_LEVEL: "info",
  };
  const url = `http://127.0.0.1:${env.PORT}`;
  let child: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  let output = "";
  let token = "";
  let xapi: Xapi | undefined;
  const outsideLab = options.labOutside ? await startOutsideLab(path.join(dataDir, "outside-lab"), options.labDiskMb ?? 64) : undefined;
  let firstStart = true;

  const gql = async <T>(query: string, variables?: Record<string, unknown>): Promise<T> => {
    const response = await fetch(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    }).catch((error: unknown) => {
      throw new Error(`the server did not answer (${(error as Error).message}); its last output:\n${output.slice(-6000)}`);
    });
    const body = (await response.json()) as { data?: T; errors?: unknown };
    if (body.errors) throw new Error(`GraphQL error: ${JSON.stringify(body.errors)}`);
    return body.data as T;
  };
  const readRun = async (runId: string) =>
    (await gql<{ run: any }>(`query($id: ID!) { run(id: $id) { ${RUN_FIELDS} } }`, { id: runId })).run;
  const waitForRun = async (runId: string, predicate: (run: any) => boolean, timeoutMs = 120_000) => {
    const controller = new AbortController();
    const stream = events.subscribe(controller.signal);
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      let run = await readRun(runId);
      if (predicate(run)) return run;
      for await (const event of stream) {
        if (event.runId !== runId) continue;
        run = await readRun(runId);
        if (predicate(run)) return run;
      }
      throw new Error(
        `run ${runId} did not reach the awaited state within ${timeoutMs / 1000} s (status ${run.status}): ${JSON.stringify(run.tasks, null, 1)}`,
      );
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
  };

  /** What LAB=on registers by itself: the pool (connected before it returns) and a local remote named "local". */
  const connectOutsideLab = async (lab: { url: string; password: string }) => {
    await gql("mutation($input: PoolInput!) { connectPool(input: $input) { id } }", {
      input: { name: "lab", url: lab.url, username: "root", password: lab.password },
    });
    const location = path.join(dataDir, "backups");
    fs.mkdirSync(location, { recursive: true });
    await gql("mutation($input: RemoteInput!) { createRemote(input: $input) { id } }", {
      input: { name: "local", kind: "LOCAL", location },
    });
    await eventually(
      "the outside lab's pool to be connected",
      async () => {
        const { pools } = await gql<{ pools: { status: string }[] }>("{ pools { status } }");
        if (pools[0]?.status !== "CONNECTED") throw new Error(`pool status ${pools[0]?.status}`);
      },
      { timeoutMs: READY_LIMIT_MS, intervalMs: 200 },
    );
  };

  const kill = async () => {
    await xapi?.disconnect().catch(() => undefined);
    xapi = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      return exited;
    }
    return undefined;
  };

  return {
    db,
    dataDir,
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    get xapi() {
      if (!xapi) throw new Error("the server is not started");
      return xapi;
    },
    async start() {
      const inherited = Object.fromEntries(
        Object.entries(process.env).filter(
          ([name]) => !/^(DATABASE_URL|ADMIN_PASSWORD|SECRET_KEY|LAB.*|PORT|HOST|DATA_DIR|LOG_LEVEL|VITEST.*|NODE_OPTIONS)$/.test(name),
        ),
      );
      output = "";
      const started = spawn(process.execPath, ["--import", "tsx", "server/main.ts"], {
        cwd: REPO,
        env: { ...inherited, ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      child = started;
      started.stdout!.on("data", (chunk) => (output += chunk));
      started.stderr!.on("data", (chunk) => (output += chunk));
      let exit: unknown;
      exited = new Promise((resolve) => started.once("exit", (code, signal) => resolve((exit = { code, signal }))));
      // Readiness has no event to wait on from outside the process: /healthz is asked until it answers (bounded).
      const exitedEarly = new Error("the server exited before it was ready");
      await eventually(
        "the server's /healthz to answer ok",
        async () => {
          if (exit)
            throw Object.assign(exitedEarly, { message: `the server exited (${JSON.stringify(exit)}) before it was ready:\n${output}` });
          const health = await fetch(`${url}/healthz`)
            .then((r) => r.json() as Promise<{ status?: string }>)
            .catch(() => undefined);
          if (health?.status !== "ok") throw new Error(`not ready yet; output so far:\n${output}`);
        },
        { timeoutMs: READY_LIMIT_MS, intervalMs: 100, stopWhen: (error) => error === exitedEarly },
      ).catch(async (error: unknown) => {
        // A server that never got ready must not hold the DATA_DIR for the next start.
        await kill();
        throw error;
      });
      token = "";
      token = (
        await gql<{ login: { token: string } }>("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }", {
          u: "admin",
          p: ADMIN_PASSWORD,
        })
      ).login.token;
      if (outsideLab && firstStart) await connectOutsideLab(outsideLab);
      firstStart = false;
      // The lab's password derives from the secret key the server keeps in DATA_DIR.
      const key = Buffer.from(fs.readFileSync(path.join(dataDir, "secret.key"), "utf8").trim(), "hex");
      const password = outsideLab?.password ?? createHmac("sha256", key).update("cairn-lab").digest("base64url").slice(0, 24);
      xapi = createClient({
        url: outsideLab?.url ?? `http://127.0.0.1:${env.LAB_PORT}`,
        auth: { user: "root", password },
        allowUnauthorized: true,
        eventPollDelay: 1000,
      }) as Xapi;
      await xapi.connect();
      await xapi.objectsFetched;
    },
    kill,
    gql,
    waitForRun,
    async runToEnd(jobId, scheduleId) {
      const { runJob } = await gql<{ runJob: { id: string } }>("mutation($id: ID!, $s: ID) { runJob(id: $id, scheduleId: $s) { id } }", {
        id: jobId,
        s: scheduleId,
      });
      return waitForRun(runJob.id, (run) => ENDED.has(run.status));
    },
    async stop() {
      await xapi?.disconnect().catch(() => undefined);
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        // SIGKILL if it hangs on its way out (only a hang guard: a clean stop takes seconds).
        const running = child;
        const hang = setTimeout(() => running.kill("SIGKILL"), 60_000);
        await exited.finally(() => clearTimeout(hang));
      }
      await outsideLab?.stop();
      await events.close();
      await db.$disconnect();
      await database.drop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
