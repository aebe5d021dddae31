/**
 * API throughput (`npm run bench:api`): a real Cairn in a child process (the built server when `dist/server/main.js`
 * exists, else tsx on the sources; the line "server:" says which), seeded through the API with the lab's pool, a few
 * remotes, jobs with schedules and some ended runs with their restore points, so that `{ jobs }` reads realistic data.
 * The load generator (bench/load-client.ts) is another process: BENCH_CLIENTS keep-alive clients (default 20) with an API
 * token, for BENCH_SECONDS (default 10, after BENCH_WARMUP_SECONDS of warm-up): (a) `{ jobs }` alone, (b) a read mix
 * (jobs, the first page of runs, pools, remotes, restore points, me). Every answer must be HTTP 200 without errors.
 *
 * BENCH_CPU_PROF=<dir> runs the server with --cpu-prof into that folder (written when it stops) to see where a request's
 * time goes; BENCH_NODE_ARGS adds node flags to the server's (e.g. "--max-semi-space-size=16"). The last line is one JSON
 * object.
 */
import { spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { type CairnChild, REPO, runToEnd, startCairnChild } from "./cairn-child.js";

const CLIENTS = Math.max(1, Number(process.env.BENCH_CLIENTS ?? 20));
const SECONDS = Math.max(1, Number(process.env.BENCH_SECONDS ?? 10));
const WARMUP_SECONDS = Math.max(0, Number(process.env.BENCH_WARMUP_SECONDS ?? 3));
const JOBS = Math.max(1, Number(process.env.BENCH_JOBS ?? 12));
const RUN_JOBS = Math.min(JOBS, Math.max(0, Number(process.env.BENCH_RUN_JOBS ?? 4)));
const CPU_PROF = process.env.BENCH_CPU_PROF;

const JOBS_QUERY = `{ jobs { id name mode enabled remotes { id name } schedules { id name cron timezone enabled nextRunAt }
  lastRun { id status createdAt } } }`;
const MIX = [
  { name: "jobs", query: JOBS_QUERY },
  { name: "runs", query: "{ runs(first: 25) { totalCount nodes { id status trigger createdAt startedAt endedAt job { id name } } } }" },
  { name: "pools", query: "{ pools { id name url status } }" },
  { name: "remotes", query: "{ remotes { id name kind location enabled } }" },
  { name: "restorePoints", query: "{ restorePoints(first: 25) { totalCount nodes { id kind vmName timestamp sizeBytes } } }" },
  { name: "me", query: "{ me { id username role } }" },
];

interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  firstError?: string;
  perQuery: Record<string, { requests: number; p50Ms: number; p95Ms: number; p99Ms: number }>;
}

/** Seeds remotes, jobs and runs through the API; returns how many of each exist. */
async function seed(cairn: CairnChild, token: string) {
  const { vms } = await cairn.gql<{ vms: { uuid: string; name: string }[] }>("{ vms { uuid name } }", {}, token);
  if (vms.length === 0) throw new Error("the lab has no VM to back up");
  for (let i = 1; i <= 3; i++) {
    const location = join(cairn.dataDir, `remote-${i}`);
    await mkdir(location, { recursive: true });
    await cairn.gql(
      "mutation($input: RemoteInput!) { createRemote(input: $input) { id } }",
      {
        input: { name: `bench remote ${i}`, kind: "LOCAL", location, enabled: true },
      },
      token,
    );
  }
  const { remotes } = await cairn.gql<{ remotes: { id: string }[] }>("{ remotes { id } }", {}, token);
  const jobIds: string[] = [];
  for (let i = 0; i < JOBS; i++) {
    const { createJob } = await cairn.gql<{ createJob: { id: string } }>(
      "mutation($input: JobInput!) { createJob(input: $input) { id } }",
      {
        input: {
          name: `bench job ${String(i + 1).padStart(2, "0")}`,
          mode: i % 2 === 0 ? "FULL" : "DELTA",
          selection: { vmUuids: [vms[i % vms.length].uuid] },
          remoteIds: [remotes[i % remotes.length].id, remotes[(i + 1) % remotes.length].id],
          settings: { compression: "NONE", concurrency: 1 },
          schedules: [
            { name: "nightly", cron: "0 2 * * *", timezone: "UTC", enabled: false, exportRetention: 7 },
            { name: "weekly", cron: "0 4 * * 0", timezone: "Europe/Paris", enabled: false, exportRetention: 4 },
          ],
        },
      },
      token,
    );
    jobIds.push(createJob.id);
  }
  const statuses: string[] = [];
  for (let i = 0; i < RUN_JOBS; i++) statuses.push((await runToEnd(cairn, token, jobIds[i])).status);
  return { vms: vms.length, remotes: remotes.length, jobs: JOBS, runs: statuses };
}

/** The load, with the CPU time the server and its database spent per answered request (steadier than req/s on a shared machine). */
async function load(cairn: CairnChild, token: string, queries: typeof MIX) {
  const before = await cairn.cpu();
  const result = await generate(cairn, token, queries);
  const after = await cairn.cpu();
  // The warm-up's requests are not counted in `requests`: its CPU is spread over the measured ones in the same ratio.
  const share = SECONDS / (SECONDS + WARMUP_SECONDS);
  const per = (ms: number) => Math.round(((ms * share) / Math.max(1, result.requests)) * 100) / 100;
  return {
    ...result,
    serverCpuMsPerRequest: per(after.serverMs - before.serverMs),
    databaseCpuMsPerRequest: per(after.databaseMs - before.databaseMs),
  };
}

async function generate(cairn: CairnChild, token: string, queries: typeof MIX): Promise<LoadResult> {
  const input = { url: cairn.url, token, clients: CLIENTS, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, queries };
  const child = spawn(process.execPath, ["--import", "tsx", "bench/load-client.ts", JSON.stringify(input)], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "inherit"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => void (output += String(chunk)));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  if (code !== 0) throw new Error(`the load generator exited with ${code}: ${output}`);
  return JSON.parse(output.trim().split("\n").at(-1)!) as LoadResult;
}

function print(label: string, result: Awaited<ReturnType<typeof load>>) {
  console.log(
    `${label.padEnd(18)} ${String(result.rps).padStart(8)} req/s   p50 ${result.p50Ms} ms   p95 ${result.p95Ms} ms   p99 ${result.p99Ms} ms   max ${result.maxMs} ms   errors ${result.errors}   CPU/request: server ${result.serverCpuMsPerRequest} ms, database ${result.databaseCpuMsPerRequest} ms`,
  );
  if (result.firstError) console.log(`  first error: ${result.firstError}`);
  for (const [name, q] of Object.entries(result.perQuery)) {
    if (Object.keys(result.perQuery).length > 1)
      console.log(`  ${name.padEnd(16)} ${q.requests} requests   p50 ${q.p50Ms} ms   p95 ${q.p95Ms} ms`);
  }
}

async function main() {
  const extra = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const nodeArgs = [...(CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF}`] : []), ...extra];
  const cairn = await startCairnChild({ lab: true, nodeArgs });
  try {
    console.log(
      `server: ${cairn.command} (pid ${cairn.pid}); load: ${CLIENTS} keep-alive clients, ${SECONDS} s after ${WARMUP_SECONDS} s warm-up`,
    );
    const session = await cairn.login();
    const { createApiToken } = await cairn.gql<{ createApiToken: { token: string } }>(
      'mutation { createApiToken(name: "bench", role: VIEWER) { token } }',
      {},
      session,
    );
    const token = createApiToken.token;
    const seeded = await seed(cairn, session);
    console.log(`seeded: ${JSON.stringify(seeded)}`);
    const jobs = await load(cairn, token, [MIX[0]]);
    print("{ jobs }", jobs);
    const mix = await load(cairn, token, MIX);
    print("read mix", mix);
    const rssMb = Math.round((await cairn.rss()) / 1024 / 1024);
    const summary = (r: Awaited<ReturnType<typeof load>>) => ({
      rps: r.rps,
      p50Ms: r.p50Ms,
      p95Ms: r.p95Ms,
      p99Ms: r.p99Ms,
      errors: r.errors,
      serverCpuMsPerRequest: r.serverCpuMsPerRequest,
      databaseCpuMsPerRequest: r.databaseCpuMsPerRequest,
    });
    const errors = jobs.errors + mix.errors;
    console.log(
      JSON.stringify({
        clients: CLIENTS,
        seconds: SECONDS,
        server: cairn.command,
        jobs: summary(jobs),
        mix: summary(mix),
        serverRssMb: rssMb,
        goal: { rps: 1000, p95Ms: 50, met: jobs.rps >= 1000 && jobs.p95Ms < 50 && errors === 0 },
      }),
    );
    if (errors > 0) process.exitCode = 1;
  } finally {
    await cairn.stop();
  }
}

await main();
