/**
 * Benchmark of the server process (moved out of test/foundation/process.test.ts, which asserts behaviour only): the time
 * from spawn to the first /healthz ok for a cold start (fresh DATA_DIR: initdb included) and warm starts (same DATA_DIR),
 * and from SIGTERM to exit (the embedded PostgreSQL stopped with it), as `npm start` runs the server: the built server
 * (`node dist/server/main.js` with its node flags and malloc settings, built first when stale) on the embedded PostgreSQL.
 *
 * Baseline, measured in the same run: spawn to exit of plain `node` on an empty module (the fixed cost of starting node on
 * this machine), so that the ratios compare across machines and loads. Best of N (BENCH_RUNS, default 3): the machine is
 * shared. The last line is one JSON object.
 */
import { spawn } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SERVER_ENV, SERVER_NODE_FLAGS, buildServerIfStale } from "../scripts/build-server.js";
import { REPO, freePort, inheritedEnv, pause } from "./cairn-child.js";

const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
const READY_HANG_MS = 300_000;

const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;
const best = (values: number[]) => Math.min(...values);

/** Spawn to exit of `node <empty module>`, in ms. */
async function baseline(empty: string): Promise<number> {
  const start = performance.now();
  const child = spawn(process.execPath, [empty], { cwd: REPO, stdio: "ignore" });
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  if (code !== 0) throw new Error(`the baseline exited with ${code}`);
  return performance.now() - start;
}

/** Starts the server on `dataDir`, waits for /healthz ok, stops it with SIGTERM; the two durations in ms. */
async function startAndStop(dataDir: string): Promise<{ readyMs: number; stopMs: number }> {
  const inherited = inheritedEnv();
  const env = { DATA_DIR: dataDir, PORT: String(await freePort()), DATABASE_PORT: String(await freePort()), LAB: "off", LOG_LEVEL: "warn" };
  const start = performance.now();
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, "dist/server/main.js"], {
    cwd: REPO,
    env: { ...inherited, ...env, ...SERVER_ENV },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => void (output = (output + String(chunk)).slice(-20_000)));
  child.stderr!.on("data", (chunk) => void (output = (output + String(chunk)).slice(-20_000)));
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve((exit = { code, signal }))),
  );
  try {
    for (;;) {
      if (exit) throw new Error(`the server exited (${JSON.stringify(exit)}) before it was ready:\n${output}`);
      if (performance.now() - start > READY_HANG_MS) throw new Error(`the server was not ready after ${READY_HANG_MS} ms:\n${output}`);
      const health = await fetch(`http://127.0.0.1:${env.PORT}/healthz`)
        .then((r) => r.json() as Promise<{ status?: string }>)
        .catch(() => undefined);
      if (health?.status === "ok") break;
      await pause(10); // the sampling step of the measure, not a wait for something
    }
    const readyMs = performance.now() - start;
    const stopping = performance.now();
    child.kill("SIGTERM");
    const result = await exited;
    if (result.code !== 0) throw new Error(`the server exited with ${JSON.stringify(result)} after SIGTERM:\n${output}`);
    return { readyMs, stopMs: performance.now() - stopping };
  } finally {
    if (!exit) {
      child.kill("SIGKILL");
      await exited;
    }
  }
}

async function main(): Promise<void> {
  buildServerIfStale();
  const work = await mkdtemp(join(tmpdir(), "cairn-bench-process-"));
  // mkdtemp makes it 0700: the OS user "postgres" could not enter it, and the server would put each cluster in a folder of
  // its own under /tmp (linked from DATA_DIR) that removing `work` leaves behind.
  await chmod(work, 0o755);
  try {
    const empty = join(work, "empty.mjs");
    await writeFile(empty, "export {};\n");
    const baselines: number[] = [];
    const cold: number[] = [];
    const warm: number[] = [];
    const stops: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      baselines.push(await baseline(empty));
      const dataDir = join(work, `data-${i}`);
      const first = await startAndStop(dataDir);
      cold.push(first.readyMs);
      stops.push(first.stopMs);
      const again = await startAndStop(dataDir);
      warm.push(again.readyMs);
      stops.push(again.stopMs);
    }
    const base = best(baselines);
    const row = (label: string, ms: number) =>
      console.log(`${label.padEnd(40)} ${(ms / 1000).toFixed(2).padStart(7)} s   ${(ms / base).toFixed(1).padStart(6)} x baseline`);
    row("baseline (node, empty module)", base);
    row("cold start (initdb included)", best(cold));
    row("warm start", best(warm));
    row("stop (SIGTERM -> exit)", best(stops));
    console.log(
      JSON.stringify({
        baselineMs: Math.round(base),
        coldStartMs: Math.round(best(cold)),
        warmStartMs: Math.round(best(warm)),
        stopMs: Math.round(best(stops)),
        coldStartRatio: round(best(cold) / base),
        warmStartRatio: round(best(warm) / base),
        stopRatio: round(best(stops) / base),
        runs: RUNS,
        server: "node dist/server/main.js",
        baseline: "node, empty module",
      }),
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
