/**
 * A real Cairn as a child process for the API benchmarks (bench/api.ts, bench/subscribers.ts): the built server
 * (`node dist/server/main.js`) when `npm run build` made one, else `node --import tsx server/main.ts`; its own DATA_DIR,
 * embedded PostgreSQL and ports; optional lab. Seeding and reading go through the API, as a client would.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SERVER_ENV, SERVER_NODE_FLAGS, buildServerIfStale } from "../scripts/build-server.js";

export const REPO = fileURLToPath(new URL("..", import.meta.url));
const BUILT = join(REPO, "dist/server/main.js");
const ADMIN_PASSWORD = "bench-admin-password";
const READY_HANG_MS = 300_000;

export const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** This process's environment without the server settings a benchmark chooses itself (a caller's shell may have them set). */
export function inheritedEnv(): Record<string, string | undefined> {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !/^(DATABASE_URL|ADMIN_PASSWORD|SECRET_KEY|LAB.*|PORT|HOST|DATA_DIR|LOG_LEVEL|NODE_OPTIONS|NODE_ENV|METRICS)$/.test(name),
    ),
  );
}

/**
 * Whether to run the built server: built (again) when a source is newer than dist/, as `npm start` does; when the build
 * fails (a source being edited does not compile), the sources through tsx, said on stderr.
 */
function builtServer(): boolean {
  if (process.env.BENCH_SERVER === "tsx") return false;
  try {
    buildServerIfStale();
  } catch (error) {
    console.error(`the server could not be built (${(error as Error).message.split("\n")[0]}): running the sources through tsx`);
    return false;
  }
  return existsSync(BUILT);
}

export interface CairnChild {
  url: string;
  pid: number;
  /** "node dist/server/main.js" or "node --import tsx server/main.ts". */
  command: string;
  dataDir: string;
  gql<T = any>(query: string, variables?: Record<string, unknown>, token?: string): Promise<T>;
  login(): Promise<string>;
  /** Resident set size of the server process, in bytes (from /proc). */
  rss(): Promise<number>;
  /** CPU time used so far (user + system, ms) by the server process and, apart, by its descendants (the embedded PostgreSQL). */
  cpu(): Promise<{ serverMs: number; databaseMs: number }>;
  stop(): Promise<void>;
}

export async function startCairnChild(options: { lab: boolean; env?: Record<string, string>; nodeArgs?: string[] }): Promise<CairnChild> {
  const dataDir = await mkdtemp(join(tmpdir(), "cairn-bench-api-"));
  // Reachable by the OS user "postgres", as the tests make theirs: else the cluster is moved out of it (embedded-postgres.ts,
  // reachableDataDir) and removing dataDir would leave it behind.
  await chmod(dataDir, 0o755);
  const inherited = inheritedEnv();
  const port = await freePort();
  const env = {
    ...SERVER_ENV, // glibc malloc settings, as `npm start` runs the server
    DATA_DIR: dataDir,
    PORT: String(port),
    DATABASE_PORT: String(await freePort()),
    LAB: options.lab ? "on" : "off",
    LAB_PORT: "0",
    LAB_DISK_MB: "16",
    ADMIN_PASSWORD,
    ...options.env,
  };
  // BENCH_SERVER_DIR: another checkout's sources (e.g. `git archive` of the commit before a change), for a before/after.
  const otherDir = process.env.BENCH_SERVER_DIR;
  const built = !otherDir && builtServer();
  // The built server as `npm start` runs it (its node flags), then the benchmark's own.
  const nodeArgs = options.nodeArgs ?? [];
  const args = built ? [...SERVER_NODE_FLAGS, ...nodeArgs, BUILT] : [...nodeArgs, "--import", "tsx", "server/main.ts"];
  const command = otherDir
    ? `node --import tsx server/main.ts in ${otherDir}`
    : built
      ? "node dist/server/main.js"
      : "node --import tsx server/main.ts";
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: otherDir ?? REPO,
    env: { ...inherited, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer) => void (output = (output + String(chunk)).slice(-20_000));
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<void>((resolve) => child.once("exit", (code, signal) => resolve(void (exit = { code, signal }))));
  const url = `http://127.0.0.1:${port}`;
  const started = performance.now();
  try {
    for (;;) {
      if (exit) throw new Error(`the server exited (${JSON.stringify(exit)}) before it was ready:\n${output}`);
      if (performance.now() - started > READY_HANG_MS) throw new Error(`the server was not ready after ${READY_HANG_MS} ms:\n${output}`);
      const health = await fetch(`${url}/healthz`)
        .then((r) => r.json() as Promise<{ status?: string }>)
        .catch(() => undefined);
      if (health?.status === "ok") break;
      await pause(100); // the server's start is polled: it offers nothing to wait on from another process
    }
  } catch (error) {
    child.kill("SIGKILL");
    await exited;
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }

  const gql = async <T>(query: string, variables?: Record<string, unknown>, token?: string): Promise<T> => {
    const response = await fetch(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await response.json()) as { data?: T; errors?: { message: string }[] };
    if (body.errors?.length) throw new Error(`${query.slice(0, 80)}: ${body.errors.map((e) => e.message).join("; ")}`);
    return body.data as T;
  };
  return {
    url,
    pid: child.pid!,
    command,
    dataDir,
    gql,
    async login() {
      const data = await gql<{ login: { token: string } }>(
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
        {
          u: "admin",
          p: ADMIN_PASSWORD,
        },
      );
      return data.login.token;
    },
    async rss() {
      const status = await readFile(`/proc/${child.pid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
    },
    cpu: () => cpuOfTree(child.pid!),
    async stop() {
      if (!exit) {
        child.kill("SIGTERM");
        const forced = setTimeout(() => child.kill("SIGKILL"), 30_000);
        await exited;
        clearTimeout(forced);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

const ENDED = new Set(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);

/** Polls a run until it ends (the benchmark's setup, not what it measures). */
export async function runToEnd(
  cairn: CairnChild,
  token: string,
  jobId: string,
  timeoutMs = 600_000,
): Promise<{ id: string; status: string }> {
  const { runJob } = await cairn.gql<{ runJob: { id: string } }>("mutation($id: ID!) { runJob(id: $id) { id } }", { id: jobId }, token);
  const started = performance.now();
  for (;;) {
    const { run } = await cairn.gql<{ run: { id: string; status: string } }>(
      "query($id: ID!) { run(id: $id) { id status } }",
      { id: runJob.id },
      token,
    );
    if (ENDED.has(run.status)) return run;
    if (performance.now() - started > timeoutMs) throw new Error(`run ${run.id} did not end within ${timeoutMs} ms (${run.status})`);
    await pause(200);
  }
}

/** utime + stime of a process, in ms, and its parent's pid, from /proc/<pid>/stat; undefined when it is gone. */
export async function statOf(pid: number): Promise<{ ppid: number; cpuMs: number } | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (!text) return undefined;
  // The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { ppid: Number(fields[1]), cpuMs: (ticks * 1000) / 100 };
}

async function cpuOfTree(root: number): Promise<{ serverMs: number; databaseMs: number }> {
  const pids = (await readdir("/proc")).filter((name) => /^\d+$/.test(name)).map(Number);
  const stats = new Map<number, { ppid: number; cpuMs: number }>();
  await Promise.all(pids.map(async (pid) => void stats.set(pid, (await statOf(pid))!)));
  const descends = (pid: number): boolean => {
    for (let at = stats.get(pid)?.ppid; at && at > 1; at = stats.get(at)?.ppid) if (at === root) return true;
    return false;
  };
  let databaseMs = 0;
  for (const [pid, stat] of stats) if (stat && descends(pid)) databaseMs += stat.cpuMs;
  return { serverMs: stats.get(root)?.cpuMs ?? 0, databaseMs };
}
