/**
 * Live progress at scale (`npm run bench:subscribers`): BENCH_SUBSCRIBERS graphql-ws subscribers (default 1,000, one socket
 * each, in BENCH_PROCESSES load processes, default 2: bench/subscriber-client.ts) on runUpdated(jobId) and
 * taskUpdated(runId) while a real backup runs against the lab (a child Cairn with LAB=on, as bench/cairn-child.ts starts it).
 *
 * 1. The server starts; its RSS is read before any subscriber connects.
 * 2. The subscribers connect and subscribe to runUpdated of the job; a warm-up run of the job proves every subscription
 *    live (each subscriber saw one of its events); the server's RSS is read again: the growth per subscriber.
 * 3. The measured run starts; every subscriber subscribes to its taskUpdated at once. Per event received: the delay from
 *    the event's `emittedAt` (stamped by the server when it published the change) to its arrival at the subscriber.
 *
 * BENCH_DISK_MB sets the lab disks' size (default 256); BENCH_CPU_PROF=<dir> profiles the server, BENCH_NODE_ARGS adds node
 * flags to it (e.g. "--max-semi-space-size=32"). The last line is one JSON object.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { type CairnChild, REPO, pause, round, runToEnd, startCairnChild, statOf } from "./cairn-child.js";

const SUBSCRIBERS = Math.max(1, Number(process.env.BENCH_SUBSCRIBERS ?? 1000));
const PROCESSES = Math.max(1, Math.min(SUBSCRIBERS, Number(process.env.BENCH_PROCESSES ?? 2)));
const DISK_MB = Math.max(16, Number(process.env.BENCH_DISK_MB ?? 256));
const TOKENS = 10;
const WAIT_MS = 600_000;

interface ClientProcess {
  child: ChildProcess;
  messages: { type: string; [key: string]: unknown }[];
  waiters: (() => void)[];
}

function startClients(url: string, tokens: string[], jobId: string): ClientProcess[] {
  return Array.from({ length: PROCESSES }, (_, i) => {
    const count = Math.floor(SUBSCRIBERS / PROCESSES) + (i < SUBSCRIBERS % PROCESSES ? 1 : 0);
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "bench/subscriber-client.ts", JSON.stringify({ url, tokens, count, jobId })],
      {
        cwd: REPO,
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      },
    );
    const proc: ClientProcess = { child, messages: [], waiters: [] };
    child.on("message", (message: { type: string }) => {
      proc.messages.push(message);
      for (const wake of proc.waiters.splice(0)) wake();
    });
    child.on("exit", () => {
      for (const wake of proc.waiters.splice(0)) wake();
    });
    return proc;
  });
}

/** Resolves when every client process has sent a message of this type; fails after WAIT_MS or when one exited. */
async function all(clients: ClientProcess[], type: string, waitMs = WAIT_MS): Promise<{ type: string; [key: string]: unknown }[]> {
  const deadline = performance.now() + waitMs;
  return Promise.all(
    clients.map(async (proc) => {
      for (;;) {
        const found = proc.messages.find((m) => m.type === type);
        if (found) return found;
        if (proc.child.exitCode !== null) throw new Error(`a subscriber process exited before "${type}"`);
        if (performance.now() > deadline) throw new Error(`no "${type}" from a subscriber process after ${waitMs} ms`);
        await new Promise<void>((resolve) => {
          proc.waiters.push(resolve);
          setTimeout(resolve, 1000).unref();
        });
      }
    }),
  );
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function seed(cairn: CairnChild) {
  const session = await cairn.login();
  const tokens: string[] = [];
  for (let i = 0; i < TOKENS; i++) {
    const { createApiToken } = await cairn.gql<{ createApiToken: { token: string } }>(
      "mutation($n: String!) { createApiToken(name: $n, role: VIEWER) { token } }",
      { n: `dashboard ${i}` },
      session,
    );
    tokens.push(createApiToken.token);
  }
  const { vms } = await cairn.gql<{ vms: { uuid: string; name: string }[] }>("{ vms { uuid name } }", {}, session);
  const { remotes } = await cairn.gql<{ remotes: { id: string }[] }>("{ remotes { id } }", {}, session);
  const { createJob } = await cairn.gql<{ createJob: { id: string } }>(
    "mutation($input: JobInput!) { createJob(input: $input) { id } }",
    {
      input: {
        name: "live progress",
        mode: "FULL",
        selection: { vmUuids: [vms[0].uuid] },
        remoteIds: [remotes[0].id],
        settings: { compression: "NONE" },
        schedules: [{ name: "nightly", cron: "0 2 * * *", timezone: "UTC", enabled: false, exportRetention: 3 }],
      },
    },
    session,
  );
  return { session, tokens, jobId: createJob.id, vm: vms[0].name };
}

async function main() {
  const profile = process.env.BENCH_CPU_PROF; // a folder: the server's --cpu-prof, written when it stops
  const cairn = await startCairnChild({
    lab: true,
    env: { LAB_DISK_MB: String(DISK_MB), LOG_LEVEL: "warn" },
    nodeArgs: profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean),
  });
  let clients: ClientProcess[] = [];
  try {
    console.log(
      `server: ${cairn.command} (pid ${cairn.pid}); ${SUBSCRIBERS} subscribers in ${PROCESSES} processes; lab disks ${DISK_MB} MiB`,
    );
    const { session, tokens, jobId, vm } = await seed(cairn);
    await pause(2000); // let the start's allocations settle before the "before" reading
    const rssBefore = await cairn.rss();

    const connecting = performance.now();
    clients = startClients(`${cairn.url.replace(/^http/, "ws")}/graphql`, tokens, jobId);
    await all(clients, "connected");
    const connectMs = performance.now() - connecting;
    // The warm-up run: every subscriber sees one of its events, so every subscription is live (another run if a subscription
    // became live only after the first one ended).
    let warmUp = await runToEnd(cairn, session, jobId);
    for (let attempt = 1; ; attempt++) {
      try {
        await all(clients, "warm", 30_000);
        break;
      } catch (error) {
        if (attempt === 3) throw error;
        warmUp = await runToEnd(cairn, session, jobId);
      }
    }
    const rssConnected = await cairn.rss();
    console.log(`connected in ${Math.round(connectMs)} ms; warm-up run ${warmUp.status}`);

    let peakRss = rssConnected;
    const sampler = setInterval(() => void cairn.rss().then((rss) => void (peakRss = Math.max(peakRss, rss))), 250);
    const cpuBefore = await cairn.cpu();
    const clientCpu = async () =>
      (await Promise.all(clients.map((c) => statOf(c.child.pid!)))).reduce((sum, st) => sum + (st?.cpuMs ?? 0), 0);
    const clientCpuBefore = await clientCpu();
    const started = performance.now();
    const { runJob } = await cairn.gql<{ runJob: { id: string } }>("mutation($id: ID!) { runJob(id: $id) { id } }", { id: jobId }, session);
    for (const proc of clients) proc.child.send({ type: "track", runId: runJob.id });
    await all(clients, "final");
    const runMs = performance.now() - started;
    clearInterval(sampler);
    // Where the time went: CPU seconds per second of the run (1 = one core busy all along), server and subscriber processes.
    const cpuAfter = await cairn.cpu();
    const cores = {
      server: round((cpuAfter.serverMs - cpuBefore.serverMs) / runMs, 2),
      database: round((cpuAfter.databaseMs - cpuBefore.databaseMs) / runMs, 2),
      subscribers: round(((await clientCpu()) - clientCpuBefore) / runMs, 2),
    };
    const { run } = await cairn.gql<{ run: { status: string; transferredBytes: number } }>(
      "query($id: ID!) { run(id: $id) { status transferredBytes } }",
      { id: runJob.id },
      session,
    );
    for (const proc of clients) proc.child.send({ type: "finish" });
    const done = (await all(clients, "done")) as unknown as {
      delays: number[];
      runEvents: number;
      taskEvents: number;
      finalSeen: number;
    }[];
    const delays = done.flatMap((d) => d.delays).sort((a, b) => a - b);
    const runEvents = done.reduce((sum, d) => sum + d.runEvents, 0);
    const taskEvents = done.reduce((sum, d) => sum + d.taskEvents, 0);
    const mb = (bytes: number) => round(bytes / 1024 / 1024);
    const result = {
      subscribers: SUBSCRIBERS,
      processes: PROCESSES,
      server: cairn.command,
      run: { status: run.status, seconds: round(runMs / 1000, 2), transferredMb: mb(run.transferredBytes), vm },
      eventsPerSubscriber: { runUpdated: round(runEvents / SUBSCRIBERS), taskUpdated: round(taskEvents / SUBSCRIBERS) },
      deliveries: delays.length,
      delay: { p50Ms: percentile(delays, 50), p95Ms: percentile(delays, 95), p99Ms: percentile(delays, 99), maxMs: delays.at(-1) ?? 0 },
      rss: {
        beforeMb: mb(rssBefore),
        connectedMb: mb(rssConnected),
        peakDuringRunMb: mb(peakRss),
        perSubscriberKb: round((rssConnected - rssBefore) / 1024 / SUBSCRIBERS),
      },
      coresBusyDuringRun: cores,
      // Steadier than the delays on a shared machine: the server's CPU per message delivered to a subscriber.
      serverCpuUsPerDelivery: round(((cpuAfter.serverMs - cpuBefore.serverMs) * 1000) / Math.max(1, delays.length)),
      goal: { p95Ms: 100, met: percentile(delays, 95) < 100 },
    };
    console.log(
      `run ${run.status} in ${result.run.seconds} s; ${delays.length} deliveries (${result.eventsPerSubscriber.runUpdated} runUpdated + ${result.eventsPerSubscriber.taskUpdated} taskUpdated per subscriber)`,
    );
    console.log(
      `delay from emittedAt to the subscriber: p50 ${result.delay.p50Ms} ms, p95 ${result.delay.p95Ms} ms, max ${result.delay.maxMs} ms`,
    );
    console.log(
      `server RSS: ${result.rss.beforeMb} MB before, ${result.rss.connectedMb} MB with ${SUBSCRIBERS} subscribers (${result.rss.perSubscriberKb} KB each), peak ${result.rss.peakDuringRunMb} MB during the run`,
    );
    console.log(
      `busy during the run (cores): server ${cores.server}, database ${cores.database}, subscribers ${cores.subscribers}; server CPU ${result.serverCpuUsPerDelivery} µs per delivery`,
    );
    console.log(JSON.stringify(result));
  } finally {
    for (const proc of clients) if (proc.child.exitCode === null) proc.child.kill("SIGKILL");
    await cairn.stop();
  }
}

await main();
