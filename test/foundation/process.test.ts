/**
 * The real server as a process, started the way `npm start` starts it (plain node on the build, dist/server/main.js), with the
 * embedded PostgreSQL (no DATABASE_URL) in a fresh DATA_DIR: first start prints the URL and a generated admin password,
 * /healthz and login work, SIGTERM exits 0 and leaves no PostgreSQL behind, a second start is quick, a kill -9 leaves an orphan
 * PostgreSQL that the next start stops, and as root a DATA_DIR under a 0700 folder still works.
 *
 * Times are printed (cold start, warm start), never asserted: `npm run bench:process` measures them. Every server a test
 * starts is stopped after it, passed or failed, so that a failure never leaves a process on the DATA_DIR for the next test.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { builtServerCommand } from "../support/built-server.js";
import { eventually } from "../support/eventually.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
// Start and stop times are printed, not asserted: on a busy 2-core machine they vary several-fold (bench/process.ts).
/** Only bounds a hang: a server that has not exited this long after SIGTERM is reported as not stopping. */
const STOP_HANG_MS = 60_000;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The postmaster's pid from its pid file, and the pids of its children (background workers, backends). */
async function postgresProcesses(pgDir: string): Promise<number[]> {
  const text = await fs.readFile(path.join(pgDir, "postmaster.pid"), "utf8").catch(() => "");
  const postmaster = Number(text.split("\n")[0]);
  if (!Number.isInteger(postmaster) || postmaster <= 0 || !isAlive(postmaster)) return [];
  const children: number[] = [];
  for (const entry of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await fs.readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    // Fields after the ")" that closes the command name: state, ppid, ...
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === postmaster) children.push(Number(entry));
  }
  return [postmaster, ...children];
}

/** Every live process whose command line names this data folder (the postmaster is started with `-D <folder>`). */
async function processesNaming(folder: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.split("\0").includes(folder)) found.push(Number(entry));
  }
  return found;
}

interface ServerProcess {
  child: ChildProcess;
  output: () => string;
  /** Milliseconds from spawn to the first /healthz answering `{ status: "ok" }`. */
  readyMs: number;
  url: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const started: ServerProcess[] = [];

// The build first (when stale), outside any test's time: tsc on a busy 2-core machine takes minutes. A bound for a hang only.
beforeAll(() => void builtServerCommand(), 900_000);

/** Spawns the server as `npm start` runs it (after its build steps) and waits for /healthz to answer ok. */
async function startServer(env: Record<string, string>, limitMs = 180_000, runAs?: { uid: number; gid: number }): Promise<ServerProcess> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) =>
        !/^(DATABASE_URL|ADMIN_PASSWORD|SECRET_KEY|LAB.*|PORT|HOST|DATA_DIR|LOG_LEVEL|VITEST.*|NODE_OPTIONS|NODE_ENV)$/.test(name),
    ),
  );
  const [node, args] = builtServerCommand();
  const start = performance.now();
  const child = spawn(node, args, {
    cwd: REPO,
    env: { ...inherited, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    ...(runAs ?? {}),
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((value) => (exit = value));
  const url = `http://127.0.0.1:${env.PORT}`;
  const server: ServerProcess = { child, output: () => output, readyMs: NaN, url, exited };
  started.push(server);
  await eventually(
    "the server's /healthz to answer ok",
    async () => {
      // An exit is final: fail at once, with what the server said.
      if (exit)
        throw Object.assign(new Error(`the server exited (${JSON.stringify(exit)}) before it was ready:\n${output}`), { final: true });
      const health = await fetch(`${url}/healthz`)
        .then((r) => r.json() as Promise<{ status?: string }>)
        .catch(() => undefined);
      if (health?.status !== "ok") throw new Error(`not ready yet; output so far:\n${output}`);
    },
    { timeoutMs: limitMs, intervalMs: 25, stopWhen: (error) => (error as { final?: boolean }).final === true },
  );
  server.readyMs = Math.round(performance.now() - start);
  return server;
}

/** SIGTERM, then the exit status and how long it took (printed, not asserted); `{ code: null }` when it hangs. */
async function stopServer(server: ServerProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  const start = performance.now();
  server.child.kill("SIGTERM");
  let hang: NodeJS.Timeout | undefined;
  const hung = new Promise<{ code: null; signal: null }>(
    (resolve) => (hang = setTimeout(() => resolve({ code: null, signal: null }), STOP_HANG_MS)),
  );
  const result = await Promise.race([server.exited, hung]).finally(() => clearTimeout(hang));
  return { ...result, ms: Math.round(performance.now() - start) };
}

function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

// A failed assert must not leave its server on the DATA_DIR: the next test would meet "another Cairn process is running".
// SIGTERM first (the server stops its PostgreSQL), SIGKILL if it hangs.
afterEach(async () => {
  for (const server of started) {
    if (!running(server.child)) continue;
    const { code, signal } = await stopServer(server);
    if (code === null && signal === null && running(server.child)) {
      server.child.kill("SIGKILL");
      await server.exited;
    }
  }
});

/** The generated admin password the server printed (the console line follows the listen by a moment). */
async function printedPassword(server: ServerProcess): Promise<string> {
  const pattern = /Sign in as admin with the password: (\S+)/;
  const printed = await eventually("the generated admin password on the console", () => {
    const match = pattern.exec(server.output());
    if (!match) throw new Error(`not printed yet; output so far:\n${server.output()}`);
    return match;
  });
  return printed[1]!;
}

async function login(url: string, password: string): Promise<{ token?: string; username?: string; errors?: unknown }> {
  const response = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      query: "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token user { username role } } }",
      variables: { u: "admin", p: password },
    }),
  });
  const body = (await response.json()) as { data?: { login: { token: string; user: { username: string } } }; errors?: unknown };
  return { token: body.data?.login.token, username: body.data?.login.user.username, errors: body.errors };
}

async function environment(dataDir: string) {
  return {
    DATA_DIR: dataDir,
    PORT: String(await freePort()),
    DATABASE_PORT: String(await freePort()),
    LAB_PORT: String(await freePort()),
    LAB_DISK_MB: "8",
  };
}

const tempDirs: string[] = [];
afterAll(async () => {
  // A failed test may leave a server or its PostgreSQL running: stop what this file started, by pid.
  for (const server of started) if (running(server.child)) server.child.kill("SIGKILL");
  for (const dir of tempDirs) {
    const pgDir = await fs.realpath(path.join(dir, "data", "pg")).catch(() => undefined);
    if (pgDir) {
      for (const pid of await postgresProcesses(pgDir)) process.kill(pid, "SIGKILL");
      if (!pgDir.startsWith(dir)) await fs.rm(pgDir, { recursive: true, force: true });
    }
    await fs.rm(dir, { recursive: true, force: true });
  }
});

async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-process-"));
  tempDirs.push(dir);
  await fs.chmod(dir, 0o755);
  return dir;
}

// Generous bounds for hangs only: a cold start (initdb) on a busy 2-core machine takes several times what it takes idle.
describe("the server process (npm start), with the embedded database", { timeout: 300_000 }, () => {
  let dataDir: string;
  let pgDir: string;
  let password: string;

  it(`starts cold, printing the URL and a generated admin password that signs in`, async () => {
    dataDir = path.join(await tempDir(), "data");
    pgDir = path.join(dataDir, "pg");
    const env = await environment(dataDir);
    const server = await startServer(env);
    console.log(`cold start (spawn -> /healthz ok, initdb included): ${server.readyMs} ms`);

    password = await printedPassword(server);
    expect(server.output()).toContain(`Cairn is ready at ${server.url}`);
    expect(password.length).toBeGreaterThanOrEqual(12);

    const signedIn = await login(server.url, password);
    expect(signedIn.errors).toBeUndefined();
    expect(signedIn).toMatchObject({ username: "admin" });
    expect((await login(server.url, `${password}x`)).token).toBeUndefined();

    const postgres = await postgresProcesses(pgDir);
    expect(postgres.length).toBeGreaterThan(1);
    const stopped = await stopServer(server);
    console.log(`stop after SIGTERM: ${stopped.ms} ms`);
    expect(stopped).toMatchObject({ code: 0, signal: null });
    expect(postgres.filter(isAlive), "PostgreSQL processes still alive after the server exited").toEqual([]);
    expect(await processesNaming(pgDir)).toEqual([]);
    expect(existsSync(path.join(pgDir, "postmaster.pid")), "PostgreSQL did not shut down cleanly").toBe(false);
    // The generated password went to the console only: never into a log line.
    const logLines = server
      .output()
      .split("\n")
      .filter((line) => line.startsWith("{"));
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.filter((line) => line.includes(password))).toEqual([]);
  });

  it(`starts again on the same DATA_DIR, and the first password still works`, async () => {
    const server = await startServer(await environment(dataDir));
    console.log(`warm start (spawn -> /healthz ok): ${server.readyMs} ms`);
    expect((await login(server.url, password)).username).toBe("admin");
    await eventually("the ready line on the console", () => server.output().includes("Cairn is ready at"));
    expect(server.output()).toContain("(sign in as admin)");
    expect(server.output()).not.toContain("with the password");
    expect(await stopServer(server)).toMatchObject({ code: 0 });
  });

  it("after a kill -9, leaves its PostgreSQL running, and the next start stops that orphan and works", async () => {
    const killed = await startServer(await environment(dataDir));
    const [orphan] = await postgresProcesses(pgDir);
    expect(orphan).toBeDefined();
    killed.child.kill("SIGKILL");
    expect(await killed.exited).toMatchObject({ signal: "SIGKILL" });
    expect(isAlive(orphan!), "the PostgreSQL of the killed server").toBe(true);

    const next = await startServer(await environment(dataDir));
    console.log(`start after a kill -9 (stopping the orphan included): ${next.readyMs} ms`);
    expect(isAlive(orphan!), "the orphaned PostgreSQL").toBe(false);
    const [postmaster] = await postgresProcesses(pgDir);
    expect(postmaster).toBeDefined();
    expect(postmaster).not.toBe(orphan);
    expect((await login(next.url, password)).username).toBe("admin");
    expect(await stopServer(next)).toMatchObject({ code: 0 });
    expect(await processesNaming(pgDir)).toEqual([]);
  });

  it("refuses to start a second server on a DATA_DIR another live server uses, naming it", async () => {
    const first = await startServer(await environment(dataDir));
    const second = spawn(...builtServerCommand(), {
      cwd: REPO,
      env: { ...process.env, DATABASE_URL: "", ADMIN_PASSWORD: "", ...(await environment(dataDir)) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    onTestFinished(() => void (running(second) && second.kill("SIGKILL")));
    let output = "";
    second.stdout!.on("data", (chunk) => (output += chunk));
    second.stderr!.on("data", (chunk) => (output += chunk));
    const code = await new Promise((resolve) => second.once("exit", resolve));
    expect(code).toBe(1);
    expect(output).toContain(`Another Cairn process (pid ${first.child.pid}) is running on this DATA_DIR`);
    // The first one is unharmed.
    expect((await login(first.url, password)).username).toBe("admin");
    expect(await stopServer(first)).toMatchObject({ code: 0 });
  });

  it.skipIf(process.getuid?.() !== 0)("as root, starts with DATA_DIR under a folder the postgres user cannot enter (0700)", async () => {
    const parent = await tempDir();
    await fs.chmod(parent, 0o700);
    const privateDataDir = path.join(parent, "data");
    const server = await startServer(await environment(privateDataDir));
    console.log(`cold start as root under a 0700 folder: ${server.readyMs} ms`);
    const secret = await printedPassword(server);
    expect((await login(server.url, secret)).username).toBe("admin");
    // The cluster lives in a traversable folder, linked from DATA_DIR/pg so that the next start finds it.
    const link = path.join(privateDataDir, "pg");
    expect((await fs.lstat(link)).isSymbolicLink()).toBe(true);
    const real = await fs.realpath(link);
    expect(existsSync(path.join(real, "PG_VERSION"))).toBe(true);
    expect(await stopServer(server)).toMatchObject({ code: 0 });
    expect(await processesNaming(real)).toEqual([]);

    const again = await startServer(await environment(privateDataDir));
    expect((await login(again.url, secret)).username).toBe("admin");
    expect(await stopServer(again)).toMatchObject({ code: 0 });
  });

  it.skipIf(process.getuid?.() !== 0)("runs as a normal user too, its PostgreSQL running as that user", async () => {
    // As root, the suite can check the other case as well: an unprivileged OS user of its own.
    const user = "cairn-test-user";
    if (spawnSync("id", ["-u", user]).status !== 0) {
      expect(spawnSync("useradd", ["--system", "-M", "-s", "/usr/sbin/nologin", user]).status).toBe(0);
    }
    const uid = Number(spawnSync("id", ["-u", user], { encoding: "utf8" }).stdout);
    const gid = Number(spawnSync("id", ["-g", user], { encoding: "utf8" }).stdout);
    const dir = await tempDir();
    await fs.chown(dir, uid, gid);
    const userDataDir = path.join(dir, "data");
    const server = await startServer({ ...(await environment(userDataDir)), HOME: dir }, 60_000, { uid, gid });
    console.log(`cold start as a normal user: ${server.readyMs} ms`);
    expect((await login(server.url, await printedPassword(server))).username).toBe("admin");
    const [postmaster] = await postgresProcesses(path.join(userDataDir, "pg"));
    expect(postmaster).toBeDefined();
    expect((await fs.stat(`/proc/${postmaster}`)).uid).toBe(uid);
    expect(await stopServer(server)).toMatchObject({ code: 0 });
    expect(await processesNaming(path.join(userDataDir, "pg"))).toEqual([]);
  });
});
