/**
 * The built server (`npm run build`, then `npm start` = `node dist/server/main.js`) as a child process with its embedded
 * PostgreSQL: it answers /healthz, serves the dashboard and migrates from dist/ (files found relative to its modules), signs
 * in, answers a GraphQL query and a mutation with an input type (type-graphql's design:type metadata, which only tsc emits,
 * survived the build), and runs with no compiler: plain node on a .js file, no tsx/esbuild loader mapped or spawned.
 *
 * The process as such (cold/warm start, kill -9, a second server on the same DATA_DIR) is test/foundation/process.test.ts,
 * which starts this same build.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QUERY_COMPILER_FILE, SERVER_NODE_FLAGS, isValidWasm } from "../../scripts/build-server.js";
import { BUILT_MAIN, REPO, builtServerCommand } from "../support/built-server.js";
import { eventually } from "../support/eventually.js";

const ADMIN_PASSWORD = "built-server-admin-password";
/** Hang bounds, never expectations: a cold start (initdb) on a busy 2-core machine was seen taking over 4 minutes. */
const START_HANG_MS = 480_000;
const BUILD_AND_START_HANG_MS = 900_000;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The pids whose parent is `pid`, with their command lines. */
async function childrenOf(pid: number): Promise<{ pid: number; cmdline: string[] }[]> {
  const found: { pid: number; cmdline: string[] }[] = [];
  for (const entry of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await fs.readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid !== pid) continue;
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    found.push({ pid: Number(entry), cmdline: cmdline.split("\0").filter(Boolean) });
  }
  return found;
}

describe("the built server (node dist/server/main.js)", { timeout: 300_000 }, () => {
  let dir: string;
  let child: ChildProcess;
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  let output = "";
  let url: string;
  let token: string;

  const gql = async (query: string, variables?: Record<string, unknown>) => {
    const response = await fetch(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    return (await response.json()) as { data?: any; errors?: unknown };
  };

  beforeAll(async () => {
    const [node, args] = builtServerCommand();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-built-"));
    await fs.chmod(dir, 0o755);
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    // Nothing of the test runner's environment that would put a loader into the child (vitest's NODE_OPTIONS) or point it
    // elsewhere (DATABASE_URL: the embedded PostgreSQL is part of what is tested).
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(
        ([name]) =>
          !/^(DATABASE_URL|ADMIN_PASSWORD|SECRET_KEY|LAB.*|PORT|HOST|DATA_DIR|LOG_LEVEL|VITEST.*|NODE_OPTIONS|NODE_ENV)$/.test(name),
      ),
    );
    child = spawn(node, args, {
      cwd: REPO,
      env: {
        ...inherited,
        PORT: String(port),
        DATABASE_PORT: String(await freePort()),
        DATA_DIR: path.join(dir, "data"),
        ADMIN_PASSWORD,
        LAB: "off",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (chunk) => (output += chunk));
    child.stderr!.on("data", (chunk) => (output += chunk));
    exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    await eventually(
      "the built server's /healthz to answer ok",
      async () => {
        if (child.exitCode !== null || child.signalCode !== null)
          throw Object.assign(new Error(`the built server exited before it was ready:\n${output}`), { final: true });
        const health = await fetch(`${url}/healthz`)
          .then((r) => r.json() as Promise<{ status?: string }>)
          .catch(() => undefined);
        if (health?.status !== "ok") throw new Error(`not ready yet; output so far:\n${output}`);
      },
      { timeoutMs: START_HANG_MS, intervalMs: 50, stopWhen: (error) => (error as { final?: boolean }).final === true },
    );
    // Bounds a hang only: a build (tsc) and a cold start (initdb) on a busy 2-core machine take minutes.
  }, BUILD_AND_START_HANG_MS);

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const hang = setTimeout(() => child.kill("SIGKILL"), 60_000);
      await exited;
      clearTimeout(hang);
    }
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it("runs plain node on dist/server/main.js: no tsx or esbuild loaded, mapped or spawned", async () => {
    const pid = child.pid!;
    const cmdline = (await fs.readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").filter(Boolean);
    // No loader (`--import tsx` or `--loader ...`): the node binary, the memory flags `npm start` gives, the built file.
    expect(cmdline).toEqual([process.execPath, ...SERVER_NODE_FLAGS, BUILT_MAIN]);
    const environ = (await fs.readFile(`/proc/${pid}/environ`, "utf8")).split("\0");
    expect(environ.filter((line) => line.startsWith("NODE_OPTIONS="))).toEqual([]);
    const maps = await fs.readFile(`/proc/${pid}/maps`, "utf8");
    expect(maps.split("\n").filter((line) => /tsx|esbuild/.test(line))).toEqual([]);
    const spawned = await childrenOf(pid);
    expect(spawned.filter((p) => p.cmdline.some((arg) => /tsx|esbuild/.test(arg)))).toEqual([]);
    expect(child.exitCode).toBeNull();
  });

  it("reads Prisma's query compiler from a WebAssembly file beside the built client, not from a base64 module", async () => {
    const internal = path.join(REPO, "dist", "server", "db", "generated", "internal");
    const client = await fs.readFile(path.join(internal, "class.js"), "utf8");
    expect(client).not.toMatch(/wasm-base64/);
    expect(client).toContain(QUERY_COMPILER_FILE);
    expect(isValidWasm(await fs.readFile(path.join(internal, QUERY_COMPILER_FILE)))).toBe(true);
    // The running server compiles its queries with it: the tests below sign in and read through it.
  });

  it("serves /healthz and the dashboard from the build", async () => {
    expect(await (await fetch(`${url}/healthz`)).json()).toMatchObject({ status: "ok" });
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<!doctype html>/i);
  });

  it("signs in and answers a query and a mutation with an input type", async () => {
    const login = await gql("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token user { username } } }", {
      u: "admin",
      p: ADMIN_PASSWORD,
    });
    expect(login.errors).toBeUndefined();
    token = login.data.login.token;
    expect(token).toBeTruthy();

    const read = await gql("{ me { username role } jobs { id } runs(first: 5) { totalCount nodes { id } } remotes { id } }");
    expect(read.errors).toBeUndefined();
    expect(read.data).toEqual({ me: { username: "admin", role: "ADMIN" }, jobs: [], runs: { totalCount: 0, nodes: [] }, remotes: [] });

    const location = path.join(dir, "remote");
    await fs.mkdir(location);
    const created = await gql("mutation($i: RemoteInput!) { createRemote(input: $i) { id name kind } }", {
      i: { name: "built-local", kind: "LOCAL", location },
    });
    expect(created.errors).toBeUndefined();
    expect(created.data.createRemote).toMatchObject({ name: "built-local", kind: "LOCAL" });
    // An input the schema refuses is refused by field (the input type's metadata is there), not by a crash.
    const refused = await gql("mutation($i: RemoteInput!) { createRemote(input: $i) { id } }", { i: { name: "x", kind: "LOCAL" } });
    expect(JSON.stringify(refused.errors)).toContain("location");
  });

  it("stops on SIGTERM with exit code 0", async () => {
    child.kill("SIGTERM");
    expect(await exited).toEqual({ code: 0, signal: null });
  });
});
