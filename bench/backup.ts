/**
 * Benchmark of the backup engine (issues 5 and 14): FULL (XVA, compression NONE) and DELTA (VHD) backups of the lab's
 * "db-data" VM, whose disk has half its 2 MiB blocks allocated, to a local remote. Cairn runs as `npm start` runs it: the
 * built server (`node dist/server/main.js`, built first when stale) in a child process, so that its RSS can be sampled; the
 * lab runs in another child process by default (as a pool would: a separate host), or inside the server with
 * BENCH_LAB=inprocess (LAB=on).
 *
 * MB/s end to end = the run's transferredBytes / (endedAt - startedAt), snapshot and metadata included. The baseline is an
 * outside tool, what the machine does without Cairn: `curl -s -o FILE <export url>` then `sync FILE` (an fsync: Cairn's local
 * remote fsyncs every backup file, else the baseline would time the page cache and Cairn the disk), timed from curl's start
 * to sync's end. `GET /export/` of a snapshot for FULL, `GET /export_raw_vdi/?format=vhd&base=` of two snapshots bracketing
 * the same 10 % of changed blocks as Cairn's DELTA run. Cairn's measured FULL runs follow one that is not measured, so that
 * each deletes the previous backup (retention 1), as in use. Baseline and Cairn alternate (baseline, Cairn, baseline, Cairn...,
 * BENCH_RUNS pairs, default 3) so that both see the same disturbances; best of each: the machine is shared.
 *
 * Disk sizes: BENCH_SIZES (MiB, default 512,2048,8192; the lab's disks are sparse files, so 8 GiB with half its blocks
 * written holds 4 GiB on disk). The ratios come from BENCH_DISK_MB (default 2048) with BENCH_RUNS pairs; every other size
 * runs one pair of each mode, for its RSS: idle (after start and setup) and peak (VmHWM, reset once the fixture is ready,
 * and VmRSS sampled every 100 ms) during its FULL and DELTA runs. Flat = about the same for every size.
 * Where Cairn's time goes: the run's tasks (snapshot, export with its transfer, retention, clean of old snapshots) and the
 * rest of the run (metadata, queueing, the run's own records).
 * The ceiling of a ratio: what the best run's ratio would be if its export went exactly as fast as the baseline and every
 * other step (snapshot, retention, clean, metadata: its seconds minus its export's) took what it took. An export can hardly
 * beat curl reading the same URL, so a ratio cannot go above its ceiling without removing those steps.
 * Side by side, for BENCH_DISK_MB: a DELTA job with `cbtNbd` (issue 13): the same 10 % delta read through CBT + NBD
 * (BENCH_NBD_CONNECTIONS, default 2) against the export path: time of the run and bytes read from the pool (the export's
 * body for the export path, the NBD reads for CBT), and the server's peak RSS during the CBT + NBD runs (VmHWM reset after
 * the first CBT run, a full through the export path): `deltaCbtNbdPeakRssMB`.
 * BENCH_NODE_ARGS: extra node flags for the server child (`--cpu-prof --cpu-prof-dir=bench/out`, `--heapsnapshot-signal=SIGUSR2`).
 * The last line is one JSON object.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createClient, type Xapi } from "xen-api";
import { SERVER_ENV, SERVER_NODE_FLAGS, buildServerIfStale } from "../scripts/build-server.js";
import { startEmbeddedPostgres } from "../server/db/embedded-postgres.js";
import { freePort } from "./cairn-child.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const MB = 1024 * 1024;
const BLOCK = 2 * MB;
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
const LAB_IN_PROCESS = process.env.BENCH_LAB === "inprocess";
const BIG_MB = Number(process.env.BENCH_DISK_MB ?? 2048);
const SIZES = [...new Set((process.env.BENCH_SIZES ?? "512,2048,8192").split(",").map(Number).concat(BIG_MB))].sort((a, b) => a - b);
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
const run = promisify(execFile);
const CLOCK_TICKS = Number((await run("getconf", ["CLK_TCK"]).catch(() => ({ stdout: "100" }))).stdout.trim()) || 100;
const ADMIN_PASSWORD = "bench-admin-password";
const SECRET_KEY = "ab".repeat(32);
const ENDED = new Set(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);

// The server and the lab run from the build, as `npm start` runs them (no compiler in the measured process).
buildServerIfStale();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

interface Child {
  process: ChildProcess;
  pid: number;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Spawns `node <file>` (a file of the build: no compiler, and the pid is the one doing the work) and waits for `ready`.
 * `nodeArgs` go before the file (BENCH_NODE_ARGS for the server).
 */
async function spawnBuilt(
  file: string,
  env: Record<string, string>,
  ready: RegExp,
  nodeArgs: string[] = [],
  timeoutMs = 300_000,
): Promise<{ child: Child; match: RegExpMatchArray }> {
  const proc = spawn(process.execPath, [...nodeArgs, file], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  proc.stdout!.on("data", (chunk) => void (text = (text + String(chunk)).slice(-200_000)));
  proc.stderr!.on("data", (chunk) => void (text = (text + String(chunk)).slice(-200_000)));
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const child: Child = {
    process: proc,
    pid: proc.pid!,
    output: () => text,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = text.match(ready);
    if (match) return { child, match };
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${file} exited before it was ready:\n${text}`);
    if (Date.now() > deadline) {
      await child.stop();
      throw new Error(`${file} not ready after ${timeoutMs / 1000} s:\n${text}`);
    }
    await sleep(100);
  }
}

/** Peak RSS of a process: VmHWM (resettable through clear_refs) and VmRSS sampled every 100 ms. */
class RssProbe {
  sampledPeakKb = 0;
  private timer?: NodeJS.Timeout;
  constructor(private readonly pid: number) {}
  private async field(name: string): Promise<number> {
    const status = await readFile(`/proc/${this.pid}/status`, "utf8").catch(() => "");
    return Number(status.match(new RegExp(`^${name}:\\s+(\\d+)`, "m"))?.[1] ?? 0);
  }
  async start(): Promise<void> {
    // "5" resets the peak resident set size; start-up (tsx, Prisma, the lab's seeding) is not what is measured.
    await writeFile(`/proc/${this.pid}/clear_refs`, "5").catch(() => undefined);
    this.sampledPeakKb = await this.field("VmRSS");
    this.timer = setInterval(() => {
      void this.field("VmRSS").then((kb) => void (this.sampledPeakKb = Math.max(this.sampledPeakKb, kb)));
    }, 100);
  }
  async stop(): Promise<{ hwmMB: number; sampledMB: number; nowMB: number }> {
    clearInterval(this.timer);
    return {
      hwmMB: Math.round((await this.field("VmHWM")) / 1024),
      sampledMB: Math.round(this.sampledPeakKb / 1024),
      nowMB: Math.round((await this.field("VmRSS")) / 1024),
    };
  }
}

/**
 * The baseline, an outside tool: `curl -s -f -o FILE url`, then `sync FILE` (coreutils: an fsync of that file), as a local
 * remote flushes every backup file (else the baseline times the page cache, Cairn the disk). Timed from curl's start to
 * sync's end. Resolves with bytes and seconds.
 */
async function fetchToFile(url: string, file: string): Promise<Measure> {
  const cpuBefore = await cpuSecondsOf("self", "children");
  const start = process.hrtime.bigint();
  await run("curl", ["-s", "-S", "-f", "-o", file, url]);
  await run("sync", [file]);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpuSeconds = (await cpuSecondsOf("self", "children")) - cpuBefore;
  const { size } = await stat(file);
  await rm(file);
  return { bytes: size, seconds, cpuSeconds };
}

/**
 * CPU seconds (user + system) from /proc/<pid>/stat: of the process itself, or of its children that exited and were waited
 * for (curl and sync, for the baseline). On a shared machine the wall time depends on what else runs; CPU per GiB does not
 * so much, and says how much work each side does for the same bytes.
 */
async function cpuSecondsOf(pid: number | "self", which: "own" | "children" = "own"): Promise<number> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // Fields from "state" (3rd of the line): utime 14, stime 15, cutime 16, cstime 17 (1-based in proc(5)).
  const [user, system] = which === "own" ? [fields[11], fields[12]] : [fields[13], fields[14]];
  return (Number(user) + Number(system)) / CLOCK_TICKS;
}

interface Measure {
  bytes: number;
  seconds: number;
  /** For a Cairn run: where its time went (each task's kind, name and seconds, in the run's order). */
  tasks?: { kind: string; name: string; seconds: number }[];
  /** For a Cairn run: bytes its disk exports read from the pool (the export body, or the NBD reads). */
  poolBytes?: number;
  /** For a Cairn run: seconds per phase (snapshot, export, retention, clean, other). */
  phases?: Record<string, number>;
  /** CPU seconds: of curl + sync for the baseline, of the server process during the run for Cairn (PostgreSQL not counted). */
  cpuSeconds?: number;
}
const mbps = (m: Measure) => m.bytes / MB / m.seconds;
const cpuPerGiB = (m: Measure) => ((m.cpuSeconds ?? Number.NaN) * 1024 * MB) / m.bytes;
const best = (measures: Measure[]) => measures.reduce((a, b) => (mbps(b) > mbps(a) ? b : a));
/** The ratio a Cairn run would reach with an export as fast as the baseline and its other steps as they were (header). */
function ratioCeiling(cairn: Measure, baseline: Measure): number {
  const exportAtBaselineSpeed = cairn.bytes / MB / mbps(baseline);
  return round(exportAtBaselineSpeed / (exportAtBaselineSpeed + otherStepsSeconds(cairn)));
}
/** A Cairn run's seconds outside its export: snapshot, retention, clean, metadata, its records. */
const otherStepsSeconds = (cairn: Measure) => Math.max(0, cairn.seconds - (cairn.phases?.export ?? 0));

interface SizeResult {
  diskMb: number;
  allocatedBlocks: number;
  blocks: number;
  fullBaseline: Measure[];
  full: Measure[];
  fullExport: Measure[];
  deltaFirst: Measure;
  deltaBaseline: Measure[];
  delta: Measure[];
  deltaExport: Measure[];
  rss: { hwmMB: number; sampledMB: number; nowMB: number; idleMB: number };
  cbtFirst?: Measure;
  cbt?: Measure[];
  cbtExport?: Measure[];
  /** Peak RSS (VmHWM, reset after the first CBT run) during the CBT + NBD runs. */
  cbtPeakRssMB?: number;
}

const NBD_CONNECTIONS = Math.max(1, Number(process.env.BENCH_NBD_CONNECTIONS ?? 2));

async function benchOneSize(diskMb: number, databaseUrl: string, runs: number, work: string, withCbt: boolean): Promise<SizeResult> {
  const dataDir = join(work, `data-${diskMb}`);
  await mkdir(dataDir, { recursive: true });
  const children: Child[] = [];
  let xapi: Xapi | undefined;
  try {
    let labUrl: string;
    const labUser = "root";
    let labPassword: string;
    if (!LAB_IN_PROCESS) {
      labPassword = "bench-lab";
      const lab = await spawnBuilt(
        "dist/server/lab/main.js",
        {
          LAB_PORT: String(await freePort()),
          LAB_DIR: join(work, `lab-${diskMb}`),
          LAB_DISK_MB: String(diskMb),
          LAB_PASSWORD: labPassword,
          LAB_USER: labUser,
        },
        /lab pool "[^"]*" at (http:\/\/\S+)/,
      );
      children.push(lab.child);
      labUrl = lab.match[1];
    } else {
      labPassword = createHmac("sha256", Buffer.from(SECRET_KEY, "hex")).update("cairn-lab").digest("base64url").slice(0, 24);
      labUrl = "";
    }
    const server = await spawnBuilt(
      "dist/server/main.js",
      {
        PORT: "0",
        DATA_DIR: dataDir,
        DATABASE_URL: databaseUrl,
        ADMIN_PASSWORD,
        SECRET_KEY,
        LAB: LAB_IN_PROCESS ? "on" : "off",
        LAB_PORT: "0",
        LAB_DISK_MB: String(diskMb),
        LOG_LEVEL: "warn",
        // As `npm start` runs it (package.json): glibc malloc settings that keep freed buffers from staying resident.
        ...SERVER_ENV,
      },
      /Cairn is ready at (http:\/\/[^\s)]+)/,
      // As `npm start` runs it: its node flags (the young generation's size), then the benchmark's own.
      [...SERVER_NODE_FLAGS, ...NODE_ARGS],
    );
    children.push(server.child);
    const url = server.match[1];

    let token = "";
    const gql = async <T = any>(query: string, variables?: Record<string, unknown>): Promise<T> => {
      const response = await fetch(`${url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await response.json()) as { data?: T; errors?: unknown };
      if (body.errors) throw new Error(`GraphQL error: ${JSON.stringify(body.errors)}`);
      return body.data as T;
    };
    token = (
      await gql("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }", { u: "admin", p: ADMIN_PASSWORD })
    ).login.token;

    let remoteId: string;
    if (LAB_IN_PROCESS) {
      labUrl = (await gql<{ pools: { url: string }[] }>("{ pools { url } }")).pools[0].url;
      remoteId = (await gql<{ remotes: { id: string; name: string }[] }>("{ remotes { id name } }")).remotes.find(
        (r) => r.name === "local",
      )!.id;
    } else {
      await gql("mutation($i: PoolInput!) { connectPool(input: $i) { id status } }", {
        i: { name: "bench-lab", url: labUrl, username: labUser, password: labPassword },
      });
      const location = join(dataDir, "backups");
      await mkdir(location, { recursive: true });
      remoteId = (
        await gql("mutation($i: RemoteInput!) { createRemote(input: $i) { id } }", { i: { name: "local", kind: "LOCAL", location } })
      ).createRemote.id;
    }

    xapi = createClient({ url: labUrl, auth: { user: labUser, password: labPassword }, allowUnauthorized: true }) as Xapi;
    await xapi.connect();
    await xapi.objectsFetched;
    const x = xapi;
    const vm = Object.values(x.objects.all).find(
      (o) => o.$type === "VM" && o.name_label === "db-data" && !o.is_a_snapshot && !o.is_a_template,
    )!;
    const diskOf = (vmRef: string): string => {
      const record = x.getObjectByRef(vmRef) as unknown as { VBDs: string[] };
      const vbd = record.VBDs.map((ref) => x.getObjectByRef(ref) as unknown as { type: string; VDI: string }).find(
        (v) => v.type === "Disk",
      )!;
      return vbd.VDI;
    };
    const vdi = diskOf(vm.$ref);
    const blocks = (diskMb * MB) / BLOCK;

    // Half the blocks allocated: the seed writes at most 32; scribble the rest (distinct random blocks, some already written).
    for (let round = 0; round < 50; round++) {
      const allocated = ((await x.call("lab.vdi_blocks", vdi)) as number[]).length;
      if (allocated >= blocks / 2) break;
      await x.call("lab.scribble", vdi, blocks / 2 - allocated, `half-${round}`);
    }
    const allocatedBlocks = ((await x.call("lab.vdi_blocks", vdi)) as number[]).length;
    const session = (x as unknown as { sessionId: string }).sessionId;
    const labQuery = (params: Record<string, string>) => new URLSearchParams({ session_id: session, ...params }).toString();
    const snapshot = async (name: string) => {
      const ref = (await x.callAsync("VM.snapshot", vm.$ref, name)) as string;
      await x.barrier(ref);
      return ref;
    };
    const destroySnapshot = async (ref: string) => {
      const disk = diskOf(ref);
      await x.call("VM.destroy", ref);
      await x.call("VDI.destroy", disk);
    };

    const runJob = async (jobId: string, scheduleId: string): Promise<{ run: Measure; exported: Measure }> => {
      const cpuBefore = await cpuSecondsOf(server.child.pid);
      const runId = (await gql("mutation($id: ID!, $s: ID) { runJob(id: $id, scheduleId: $s) { id } }", { id: jobId, s: scheduleId }))
        .runJob.id;
      for (;;) {
        await sleep(200);
        const { run } = await gql(
          `query($id: ID!) { run(id: $id) { status error startedAt endedAt transferredBytes tasks { id parentId kind name status startedAt endedAt sizeBytes result warnings } } }`,
          { id: runId },
        );
        if (!ENDED.has(run.status)) continue;
        if (run.status !== "SUCCESS") throw new Error(`run ${runId} ended ${run.status}: ${run.error}\n${JSON.stringify(run.tasks)}`);
        const seconds = (Date.parse(run.endedAt) - Date.parse(run.startedAt)) / 1000;
        const exports = run.tasks.filter((t: { kind: string }) => t.kind === "export");
        const exportSeconds = exports.reduce(
          (sum: number, t: { startedAt: string; endedAt: string }) => sum + (Date.parse(t.endedAt) - Date.parse(t.startedAt)) / 1000,
          0,
        );
        const tasks = run.tasks.map((t: { kind: string; name: string; startedAt: string; endedAt: string }) => ({
          kind: t.kind,
          name: t.name,
          seconds: (Date.parse(t.endedAt) - Date.parse(t.startedAt)) / 1000,
        }));
        // Where the time went: the phases a backup run has (a transfer is inside its export), the rest is "other" (the
        // run's records, the VM's metadata, queueing).
        const phases: Record<string, number> = { snapshot: 0, export: 0, retention: 0, clean: 0, other: 0 };
        const byId = new Map<string, { parentId: string | null; kind: string }>(run.tasks.map((t: any) => [t.id, t]));
        const insidePhase = (id: string | null): boolean => {
          for (let at = id ? byId.get(id) : undefined; at; at = at.parentId ? byId.get(at.parentId) : undefined)
            if (at.kind in phases) return true;
          return false;
        };
        for (const [i, t] of tasks.entries())
          if (t.kind in phases && t.kind !== "other" && !insidePhase(run.tasks[i].parentId)) phases[t.kind] += t.seconds;
        phases.other = Math.max(0, seconds - phases.snapshot - phases.export - phases.retention - phases.clean);
        for (const kind of Object.keys(phases)) phases[kind] = round(phases[kind]);
        const poolBytes = exports.reduce(
          (sum: number, t: { result: { readFromPool?: number; bytes?: number } | null }) =>
            sum + (t.result?.readFromPool ?? t.result?.bytes ?? 0),
          0,
        );
        const warnings = run.tasks.flatMap((t: { warnings: string[] }) => t.warnings);
        if (warnings.length > 0) console.log(`  (warnings: ${warnings.join(" | ")})`);
        return {
          run: {
            bytes: run.transferredBytes,
            seconds,
            tasks,
            poolBytes,
            phases,
            cpuSeconds: (await cpuSecondsOf(server.child.pid)) - cpuBefore,
          },
          exported: { bytes: run.transferredBytes, seconds: exportSeconds, poolBytes },
        };
      }
    };
    const createJob = async (input: Record<string, unknown>) =>
      (await gql("mutation($input: JobInput!) { createJob(input: $input) { id schedules { id } } }", { input })).createJob as {
        id: string;
        schedules: { id: string }[];
      };

    const idleMB = Math.round(Number((await readFile(`/proc/${server.child.pid}/status`, "utf8")).match(/^VmRSS:\s+(\d+)/m)![1]) / 1024);
    const probe = new RssProbe(server.child.pid);
    await probe.start();
    const line = (label: string, m: Measure) =>
      console.log(
        `  ${label.padEnd(34)} ${mbps(m).toFixed(0).padStart(6)} MB/s  ${(m.bytes / MB).toFixed(0).padStart(6)} MiB in ${m.seconds.toFixed(2)} s, CPU ${cpuPerGiB(m).toFixed(1)} s/GiB`,
      );
    console.log(
      `disk ${diskMb} MiB: ${allocatedBlocks} of ${blocks} blocks allocated; lab ${LAB_IN_PROCESS ? "inside the server" : "in its own process"}; server idle RSS ${idleMB} MB`,
    );

    // FULL: baseline and Cairn alternately, so that both see the same disturbances.
    const fullJob = await createJob({
      name: "bench full",
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [remoteId],
      settings: { compression: "NONE" },
      schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
    });
    const fullBaseline: Measure[] = [];
    const full: Measure[] = [];
    const fullExport: Measure[] = [];
    // A first run, not measured: each measured run then finds the previous backup and deletes it (exportRetention 1), as
    // every run after the first does in use. Without it the first measured run, with nothing to delete, was often the best.
    await runJob(fullJob.id, fullJob.schedules[0].id);
    for (let i = 0; i < runs; i++) {
      const snap = await snapshot(`bench baseline ${i}`);
      const fetched = await fetchToFile(
        `${labUrl}/export/?${labQuery({ ref: snap, use_compression: "false" })}`,
        join(work, "baseline.xva"),
      );
      await destroySnapshot(snap);
      fullBaseline.push(fetched);
      line(`baseline GET /export (${i + 1}/${runs})`, fetched);
      const result = await runJob(fullJob.id, fullJob.schedules[0].id);
      full.push(result.run);
      fullExport.push(result.exported);
      line(`Cairn FULL run (${i + 1}/${runs})`, result.run);
    }

    // DELTA: a first (full) run, then for each round 10 % of the blocks scribbled, the baseline (the differencing export
    // between a snapshot taken right after Cairn's previous run and one taken now: the same scribble), then Cairn's delta
    // run (whose base is its own snapshot of the previous run: the same changed blocks).
    const deltaJob = await createJob({
      name: "bench delta",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [remoteId],
      settings: { fullInterval: 0 },
      schedules: [{ cron: "0 4 * * *", exportRetention: runs + 2 }],
    });
    const first = await runJob(deltaJob.id, deltaJob.schedules[0].id);
    line("Cairn DELTA first run (full VHD)", first.run);
    const deltaBaseline: Measure[] = [];
    const delta: Measure[] = [];
    const deltaExport: Measure[] = [];
    let before = await snapshot("bench delta base");
    for (let i = 0; i < runs; i++) {
      await x.call("lab.scribble", vdi, Math.round(blocks / 10), `delta-${i}`);
      const after = await snapshot(`bench delta ${i}`);
      const fetched = await fetchToFile(
        `${labUrl}/export_raw_vdi/?${labQuery({ vdi: diskOf(after), format: "vhd", base: diskOf(before) })}`,
        join(work, "baseline.vhd"),
      );
      deltaBaseline.push(fetched);
      line(`baseline GET /export_raw_vdi base= (${i + 1}/${runs})`, fetched);
      await destroySnapshot(before);
      const result = await runJob(deltaJob.id, deltaJob.schedules[0].id);
      delta.push(result.run);
      deltaExport.push(result.exported);
      line(`Cairn DELTA run, 10 % (${i + 1}/${runs})`, result.run);
      // The next baseline's base: taken after Cairn's snapshot, with no write between them.
      await destroySnapshot(after);
      before = await snapshot(`bench delta base ${i + 1}`);
    }
    await destroySnapshot(before);
    // FULL and DELTA are what the RSS goal is about: the peak is read here, before the optional CBT part.
    const rss = { ...(await probe.stop()), idleMB };
    console.log(
      `  server peak RSS during FULL and DELTA: ${rss.hwmMB} MB (VmHWM), ${rss.sampledMB} MB (sampled every 100 ms); idle before ${idleMB} MB`,
    );
    if (!withCbt)
      return {
        diskMb,
        allocatedBlocks,
        blocks,
        fullBaseline,
        full,
        fullExport,
        deltaFirst: first.run,
        deltaBaseline,
        delta,
        deltaExport,
        rss,
      };

    // DELTA through CBT + NBD: the same 10 % scribbles, read through NBD from a network with purpose insecure_nbd.
    const network = ((await x.call("network.get_all")) as string[])[0];
    await x.call("network.add_purpose", network, "insecure_nbd");
    const cbtJob = await createJob({
      name: "bench cbt",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [remoteId],
      settings: { fullInterval: 0, cbtNbd: true, nbdConnections: NBD_CONNECTIONS },
      schedules: [{ cron: "0 5 * * *", exportRetention: runs + 2 }],
    });
    const cbtFirst = await runJob(cbtJob.id, cbtJob.schedules[0].id);
    line("Cairn CBT first run (full VHD)", cbtFirst.run);
    const cbtProbe = new RssProbe(server.child.pid);
    await cbtProbe.start();
    const cbt: Measure[] = [];
    const cbtExport: Measure[] = [];
    for (let i = 0; i < runs; i++) {
      await x.call("lab.scribble", vdi, Math.round(blocks / 10), `cbt-${i}`);
      const result = await runJob(cbtJob.id, cbtJob.schedules[0].id);
      cbt.push(result.run);
      cbtExport.push(result.exported);
      line(`Cairn CBT+NBD run, 10 % (${i + 1}/${runs})`, result.run);
    }
    const cbtRss = await cbtProbe.stop();
    console.log(`  server peak RSS during the CBT + NBD runs: ${cbtRss.hwmMB} MB (VmHWM), ${cbtRss.sampledMB} MB (sampled every 100 ms)`);
    return {
      diskMb,
      allocatedBlocks,
      blocks,
      fullBaseline,
      full,
      fullExport,
      deltaFirst: first.run,
      deltaBaseline,
      delta,
      deltaExport,
      rss,
      cbtFirst: cbtFirst.run,
      cbt,
      cbtExport,
      cbtPeakRssMB: cbtRss.hwmMB,
    };
  } catch (error) {
    for (const child of children) console.error(`--- output of pid ${child.pid} ---\n${child.output().slice(-5000)}`);
    throw error;
  } finally {
    await xapi?.disconnect().catch(() => undefined);
    for (const child of children.reverse()) await child.stop();
  }
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "cairn-bench-backup-"));
  const postgres = await startEmbeddedPostgres({ dataDir: join(work, "pg"), port: await freePort(), password: "bench" });
  try {
    const databaseFor = async (name: string) => {
      const { default: pg } = await import("pg");
      const admin = new pg.Client({ connectionString: postgres.connectionString("postgres") });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`).finally(() => admin.end());
      return postgres.connectionString(name);
    };
    const bySize = new Map<number, SizeResult>();
    for (const diskMb of SIZES) {
      const main = diskMb === BIG_MB;
      const result = await benchOneSize(diskMb, await databaseFor(`cairn_bench_${diskMb}`), main ? RUNS : 1, work, main);
      bySize.set(diskMb, result);
      // The lab's disks and the backups of this size are not needed any more: an 8 GiB disk holds 4 GiB, its backups more.
      await rm(join(work, `data-${diskMb}`), { recursive: true, force: true });
      await rm(join(work, `lab-${diskMb}`), { recursive: true, force: true });
    }
    const big = bySize.get(BIG_MB)!;
    const load = (await readFile("/proc/loadavg", "utf8")).split(" ").slice(0, 3).join(" ");

    const fullBest = best(big.full);
    const fullBaselineBest = best(big.fullBaseline);
    const deltaBest = best(big.delta);
    const deltaBaselineBest = best(big.deltaBaseline);
    const fullRatio = round(mbps(fullBest) / mbps(fullBaselineBest));
    const deltaRatio = round(mbps(deltaBest) / mbps(deltaBaselineBest));
    console.log("");
    console.log(
      `summary (${BIG_MB} MiB disk, ${big.allocatedBlocks}/${big.blocks} blocks allocated, best of ${RUNS} alternated pairs; shared machine, load ${load} at the end: figures are noisy)`,
    );
    const row = (label: string, value: string, note = "") => console.log(`  ${label.padEnd(40)} ${value.padStart(10)}  ${note}`);
    row(
      "FULL baseline (curl -o + sync of /export)",
      `${mbps(fullBaselineBest).toFixed(0)} MB/s`,
      `${(fullBaselineBest.bytes / MB).toFixed(0)} MiB`,
    );
    row("FULL Cairn run, end to end", `${mbps(fullBest).toFixed(0)} MB/s`, `ratio ${fullRatio}`);
    row(
      "FULL Cairn export task only",
      `${mbps(best(big.fullExport)).toFixed(0)} MB/s`,
      `ratio ${round(mbps(best(big.fullExport)) / mbps(fullBaselineBest))}`,
    );
    row("DELTA first run (full VHD)", `${mbps(big.deltaFirst).toFixed(0)} MB/s`, `${(big.deltaFirst.bytes / MB).toFixed(0)} MiB`);
    row(
      "DELTA baseline (curl -o + sync, base=)",
      `${mbps(deltaBaselineBest).toFixed(0)} MB/s`,
      `${(deltaBaselineBest.bytes / MB).toFixed(0)} MiB`,
    );
    row("DELTA Cairn run (10 %), end to end", `${mbps(deltaBest).toFixed(0)} MB/s`, `ratio ${deltaRatio}`);
    row(
      "DELTA Cairn export task only",
      `${mbps(best(big.deltaExport)).toFixed(0)} MB/s`,
      `ratio ${round(mbps(best(big.deltaExport)) / mbps(deltaBaselineBest))}`,
    );
    for (const [diskMb, result] of bySize)
      row(
        `server RSS, ${diskMb} MiB disk`,
        `${result.rss.hwmMB} MB`,
        `peak (VmHWM) during FULL + DELTA; sampled ${result.rss.sampledMB} MB; idle ${result.rss.idleMB} MB; FULL ${mbps(best(result.full)).toFixed(0)} MB/s (baseline ${mbps(best(result.fullBaseline)).toFixed(0)}), DELTA ${mbps(best(result.delta)).toFixed(0)} MB/s (baseline ${mbps(best(result.deltaBaseline)).toFixed(0)})`,
      );
    const breakdown = (label: string, m: Measure) =>
      console.log(
        `  where the time of the best ${label} went (${m.seconds.toFixed(2)} s): ${Object.entries(m.phases ?? {})
          .map(([phase, seconds]) => `${phase} ${seconds.toFixed(2)} s`)
          .join(", ")}  [tasks: ${(m.tasks ?? []).map((t) => `${t.kind} ${t.seconds.toFixed(2)} s`).join(", ")}]`,
      );
    breakdown("FULL run", fullBest);
    breakdown("DELTA run", deltaBest);
    const ceilingRow = (label: string, cairn: Measure, baseline: Measure) =>
      console.log(
        `  ${label} ratio if its export matched the baseline: ${ratioCeiling(cairn, baseline)} (the other steps took ${otherStepsSeconds(cairn).toFixed(2)} s)`,
      );
    ceilingRow("best FULL run's", fullBest, fullBaselineBest);
    ceilingRow("best DELTA run's", deltaBest, deltaBaselineBest);
    // Export path and CBT + NBD side by side: the fastest run of each, the same 10 % delta of the same disk.
    const fastest = (measures: Measure[]) => measures.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    const exportPath = fastest(big.delta);
    const cbtPath = fastest(big.cbt!);
    const exportTask = fastest(big.deltaExport);
    const cbtTask = fastest(big.cbtExport!);
    console.log(`  10 % delta of the ${BIG_MB} MiB disk, export path vs CBT + NBD (${NBD_CONNECTIONS} connections), fastest of ${RUNS}:`);
    console.log(`    ${"".padEnd(30)} ${"export path".padStart(14)} ${"CBT + NBD".padStart(14)}`);
    console.log(
      `    ${"run, end to end".padEnd(30)} ${`${exportPath.seconds.toFixed(2)} s`.padStart(14)} ${`${cbtPath.seconds.toFixed(2)} s`.padStart(14)}`,
    );
    console.log(
      `    ${"disk read task(s)".padEnd(30)} ${`${exportTask.seconds.toFixed(2)} s`.padStart(14)} ${`${cbtTask.seconds.toFixed(2)} s`.padStart(14)}`,
    );
    console.log(
      `    ${"bytes read from the pool".padEnd(30)} ${`${((exportPath.poolBytes ?? 0) / MB).toFixed(0)} MiB`.padStart(14)} ${`${((cbtPath.poolBytes ?? 0) / MB).toFixed(0)} MiB`.padStart(14)}`,
    );
    console.log(
      `    ${"written to the remote".padEnd(30)} ${`${(exportPath.bytes / MB).toFixed(0)} MiB`.padStart(14)} ${`${(cbtPath.bytes / MB).toFixed(0)} MiB`.padStart(14)}`,
    );
    breakdown("CBT + NBD run", cbtPath);
    const smallest = bySize.get(SIZES[0])!;
    const mode = (cairn: Measure[], baseline: Measure[]) => ({
      baselineMBps: round(mbps(best(baseline)), 1),
      cairnMBps: round(mbps(best(cairn)), 1),
      ratio: round(mbps(best(cairn)) / mbps(best(baseline))),
      ratioCeiling: ratioCeiling(best(cairn), best(baseline)),
      seconds: round(best(cairn).seconds),
      phases: best(cairn).phases,
      // The least CPU per GiB of each side: load-independent where MB/s is not.
      baselineCpuSecondsPerGiB: round(Math.min(...baseline.map(cpuPerGiB))),
      cairnCpuSecondsPerGiB: round(Math.min(...cairn.map(cpuPerGiB))),
    });
    console.log(
      JSON.stringify({
        fullRatio,
        deltaRatio,
        fullMBps: round(mbps(fullBest), 1),
        baselineMBps: round(mbps(fullBaselineBest), 1),
        peakRssMB: big.rss.hwmMB,
        deltaMBps: round(mbps(deltaBest), 1),
        deltaBaselineMBps: round(mbps(deltaBaselineBest), 1),
        fullRatioCeiling: ratioCeiling(fullBest, fullBaselineBest),
        deltaRatioCeiling: ratioCeiling(deltaBest, deltaBaselineBest),
        fullExportRatio: round(mbps(best(big.fullExport)) / mbps(fullBaselineBest)),
        deltaExportRatio: round(mbps(best(big.deltaExport)) / mbps(deltaBaselineBest)),
        peakRssSmallMB: smallest.rss.hwmMB,
        diskMB: BIG_MB,
        smallDiskMB: smallest.diskMb,
        runs: RUNS,
        lab: LAB_IN_PROCESS ? "inprocess" : "separate",
        deltaExportPathSeconds: round(exportPath.seconds),
        deltaCbtNbdSeconds: round(cbtPath.seconds),
        deltaExportPathTaskSeconds: round(exportTask.seconds),
        deltaCbtNbdTaskSeconds: round(cbtTask.seconds),
        deltaExportPathPoolMiB: round((exportPath.poolBytes ?? 0) / MB, 1),
        deltaCbtNbdPoolMiB: round((cbtPath.poolBytes ?? 0) / MB, 1),
        deltaCbtNbdPeakRssMB: big.cbtPeakRssMB,
        nbdConnections: NBD_CONNECTIONS,
        baseline: "curl -o + sync",
        server: "node dist/server/main.js",
        load,
        full: mode(big.full, big.fullBaseline),
        delta: mode(big.delta, big.deltaBaseline),
        rss: Object.fromEntries(
          [...bySize].map(([diskMb, result]) => [
            String(diskMb),
            { idleMB: result.rss.idleMB, peakMB: result.rss.hwmMB, sampledPeakMB: result.rss.sampledMB },
          ]),
        ),
        sizes: Object.fromEntries(
          [...bySize].map(([diskMb, result]) => [
            String(diskMb),
            { full: mode(result.full, result.fullBaseline), delta: mode(result.delta, result.deltaBaseline) },
          ]),
        ),
      }),
    );
  } finally {
    await postgres.stop();
    // The cluster may live outside `work` (RunningPostgres.dataDir).
    await rm(postgres.dataDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
}

await main();
