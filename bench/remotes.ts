/**
 * Benchmark of every kind of remote (issue 11): per kind (LOCAL, NFS, SMB, S3, each against the real peer the tests use,
 * test/support/remote-peers.ts, reached directly rather than through the tests' cuttable proxy):
 *
 * - backup throughput: a FULL run (XVA, compression NONE) of the lab's "db-data" VM, whose disk (BENCH_DISK_MIB, default
 *   2048) has half its 2 MiB blocks allocated: the run's transferredBytes / (endedAt - startedAt), snapshot and metadata
 *   included;
 * - the baseline, in the same run: the same bytes (the XVA Cairn just wrote, copied to a local file first, untimed) written
 *   to the same peer by an outside tool: `cp` + `sync` (LOCAL), `smbclient put`, `nfs-cp`, `curl -T` (an S3 PUT);
 *   `ratio` = Cairn / baseline;
 * - the merge time for a 10 % delta: a DELTA job keeping 1 restore point, a full run, 10 % of the disk's blocks changed,
 *   a delta run whose retention merges the full into the delta: the seconds of that retention task (null when nothing was
 *   merged: a kind without merges yet).
 *
 * Cairn runs as `npm start` runs it (the built server, `node dist/server/main.js`, in a child process, on an embedded
 * PostgreSQL), the lab in another child process (as a pool would be: a separate host). BENCH_KINDS (default
 * LOCAL,NFS,SMB,S3) chooses the kinds; a kind whose peer cannot run here is reported and left out. The machine is shared:
 * figures are noisy, the ratio less so. The last line is one JSON object: `{ kind: { backupMBps, baselineMBps, ratio,
 * merge10pctSeconds } }`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type Xapi } from "xen-api";
import { SERVER_ENV, SERVER_NODE_FLAGS, buildServerIfStale } from "../scripts/build-server.js";
import { startEmbeddedPostgres } from "../server/db/embedded-postgres.js";
import { peerSkipReason, startRemotePeer, type RemoteKindName, type RemotePeer } from "../test/support/remote-peers.js";
import { freePort } from "./cairn-child.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const MB = 1024 * 1024;
const BLOCK = 2 * MB;
const DISK_MIB = Number(process.env.BENCH_DISK_MIB ?? 2048);
const KINDS = (process.env.BENCH_KINDS ?? "LOCAL,NFS,SMB,S3").split(",").map((kind) => kind.trim()) as RemoteKindName[];
const ADMIN_PASSWORD = "bench-admin-password";
const ENDED = new Set(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);

buildServerIfStale();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

interface Child {
  process: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** Spawns `node <file>` of the build and waits for a line matching `ready`. */
async function spawnBuilt(
  file: string,
  env: Record<string, string>,
  ready: RegExp,
  nodeArgs: string[] = [],
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
    output: () => text,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
  // Readiness is a line the child prints; polled (bounded) because the output arrives in chunks.
  const deadline = Date.now() + 300_000;
  for (;;) {
    const match = text.match(ready);
    if (match) return { child, match };
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${file} exited before it was ready:\n${text}`);
    if (Date.now() > deadline) {
      await child.stop();
      throw new Error(`${file} not ready after 300 s:\n${text}`);
    }
    await sleep(100);
  }
}

interface KindResult {
  backupMBps: number;
  baselineMBps: number;
  ratio: number;
  merge10pctSeconds: number | null;
}

type Gql = <T = any>(query: string, variables?: Record<string, unknown>) => Promise<T>;

async function benchKind(kind: RemoteKindName, gql: Gql, xapi: Xapi, vm: { uuid: string; vdi: string }, work: string): Promise<KindResult> {
  const peer: RemotePeer = await startRemotePeer(kind);
  try {
    const remoteId = (
      await gql("mutation($i: RemoteInput!) { createRemote(input: $i) { id } }", { i: peer.input(`bench ${kind}`, { direct: true }) })
    ).createRemote.id as string;
    const createJob = async (input: Record<string, unknown>) =>
      (await gql("mutation($i: JobInput!) { createJob(input: $i) { id schedules { id } } }", { i: input })).createJob as {
        id: string;
        schedules: { id: string }[];
      };
    const runToEnd = async (job: { id: string; schedules: { id: string }[] }) => {
      const runId = (
        await gql("mutation($id: ID!, $s: ID) { runJob(id: $id, scheduleId: $s) { id } }", { id: job.id, s: job.schedules[0].id })
      ).runJob.id;
      for (;;) {
        await sleep(250);
        const { run } = await gql(
          "query($id: ID!) { run(id: $id) { status error startedAt endedAt transferredBytes tasks { kind name status startedAt endedAt result warnings } } }",
          { id: runId },
        );
        if (!ENDED.has(run.status)) continue;
        if (run.status !== "SUCCESS") throw new Error(`${kind}: run ended ${run.status}: ${run.error}\n${JSON.stringify(run.tasks)}`);
        const warnings = run.tasks.flatMap((t: { warnings: string[] }) => t.warnings);
        if (warnings.length > 0) console.log(`  ${kind} (warnings: ${warnings.join(" | ")})`);
        return run;
      }
    };
    const seconds = (t: { startedAt: string; endedAt: string }) => (Date.parse(t.endedAt) - Date.parse(t.startedAt)) / 1000;

    // Backup throughput, then the same bytes through the outside tool.
    const full = await createJob({
      name: `bench ${kind} full`,
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [remoteId],
      settings: { compression: "NONE" },
      schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
    });
    const fullRun = await runToEnd(full);
    const backupMBps = fullRun.transferredBytes / MB / seconds(fullRun);
    const stored = await peer.files();
    const xva = [...stored.keys()].find((file) => file.endsWith(".xva"));
    if (xva === undefined) throw new Error(`${kind}: no XVA on the peer after the FULL run`);
    const local = join(work, "baseline.xva");
    // The XVA Cairn wrote, as a local file for the outside tool (untimed).
    await peer.copyOut(xva, local);
    const baselineStart = process.hrtime.bigint();
    await peer.putWithOutsideTool(local, "baseline/baseline.xva");
    const baselineSeconds = Number(process.hrtime.bigint() - baselineStart) / 1e9;
    const baselineMBps = stored.get(xva)! / MB / baselineSeconds;
    await rm(local, { force: true });
    console.log(
      `${kind}: FULL ${round(fullRun.transferredBytes / MB, 0)} MiB in ${round(seconds(fullRun))} s = ${round(backupMBps, 1)} MB/s; outside tool ${round(baselineSeconds)} s = ${round(baselineMBps, 1)} MB/s`,
    );

    // Merge of a 10 % delta.
    const delta = await createJob({
      name: `bench ${kind} delta`,
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
    });
    await runToEnd(delta);
    await xapi.call("lab.scribble", vm.vdi, Math.round(DISK_MIB / 2 / 10), `bench-${kind}-10pct`);
    const deltaRun = await runToEnd(delta);
    const retention = deltaRun.tasks.filter((t: { kind: string }) => t.kind === "retention");
    const merged = retention.reduce((sum: number, t: { result: { merged?: number } | null }) => sum + (t.result?.merged ?? 0), 0);
    const mergeSeconds = retention.reduce((sum: number, t: { startedAt: string; endedAt: string }) => sum + seconds(t), 0);
    console.log(
      `${kind}: 10 % delta ${round(deltaRun.transferredBytes / MB, 0)} MiB; retention ${round(mergeSeconds)} s, ${merged} VHD(s) merged`,
    );
    return {
      backupMBps: round(backupMBps, 1),
      baselineMBps: round(baselineMBps, 1),
      ratio: round(backupMBps / baselineMBps),
      merge10pctSeconds: merged > 0 ? round(mergeSeconds) : null,
    };
  } finally {
    await peer.stop();
  }
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "cairn-bench-remotes-"));
  const postgres = await startEmbeddedPostgres({ dataDir: join(work, "pg"), port: await freePort(), password: "bench" });
  const children: Child[] = [];
  let xapi: Xapi | undefined;
  const results: Record<string, KindResult> = {};
  try {
    const { default: pg } = await import("pg");
    const admin = new pg.Client({ connectionString: postgres.connectionString("postgres") });
    await admin.connect();
    await admin.query("CREATE DATABASE cairn_bench_remotes").finally(() => admin.end());

    const labPassword = "bench-lab";
    const lab = await spawnBuilt(
      "dist/server/lab/main.js",
      {
        LAB_PORT: String(await freePort()),
        LAB_DIR: join(work, "lab"),
        LAB_DISK_MB: String(DISK_MIB),
        LAB_PASSWORD: labPassword,
        LAB_USER: "root",
      },
      /lab pool "[^"]*" at (http:\/\/\S+)/,
    );
    children.push(lab.child);
    const labUrl = lab.match[1];
    const server = await spawnBuilt(
      "dist/server/main.js",
      {
        PORT: "0",
        DATA_DIR: join(work, "data"),
        DATABASE_URL: postgres.connectionString("cairn_bench_remotes"),
        ADMIN_PASSWORD,
        SECRET_KEY: "cd".repeat(32),
        LAB: "off",
        LOG_LEVEL: "warn",
        ...SERVER_ENV, // as `npm start` runs it
      },
      /Cairn is ready at (http:\/\/[^\s)]+)/,
      SERVER_NODE_FLAGS, // as `npm start` runs it
    );
    children.push(server.child);
    const url = server.match[1];
    let token = "";
    const gql: Gql = async (query, variables) => {
      const response = await fetch(`${url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await response.json()) as { data?: any; errors?: unknown };
      if (body.errors) throw new Error(`GraphQL error: ${JSON.stringify(body.errors)}`);
      return body.data;
    };
    token = (
      await gql("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }", { u: "admin", p: ADMIN_PASSWORD })
    ).login.token;
    await gql("mutation($i: PoolInput!) { connectPool(input: $i) { id status } }", {
      i: { name: "bench-lab", url: labUrl, username: "root", password: labPassword },
    });

    xapi = createClient({ url: labUrl, auth: { user: "root", password: labPassword }, allowUnauthorized: true }) as Xapi;
    await xapi.connect();
    await xapi.objectsFetched;
    const x = xapi;
    const record = Object.values(x.objects.all).find(
      (o) => o.$type === "VM" && o.name_label === "db-data" && !o.is_a_snapshot && !o.is_a_template,
    )!;
    const vdi = (record.VBDs as string[]).map((ref) => x.getObjectByRef(ref)).find((vbd) => vbd.type === "Disk")!.VDI as string;
    const blocks = (DISK_MIB * MB) / BLOCK;
    // Half the blocks allocated, as in bench:backup (the seed writes at most 32; scribble picks distinct random blocks).
    for (let pass = 0; pass < 50; pass++) {
      const allocated = ((await x.call("lab.vdi_blocks", vdi)) as number[]).length;
      if (allocated >= blocks / 2) break;
      await x.call("lab.scribble", vdi, blocks / 2 - allocated, `half-${pass}`);
    }
    console.log(`disk ${DISK_MIB} MiB, ${((await x.call("lab.vdi_blocks", vdi)) as number[]).length} of ${blocks} blocks allocated`);

    for (const kind of KINDS) {
      const skip = peerSkipReason(kind);
      if (skip !== undefined) {
        console.log(`${kind}: left out (${skip})`);
        continue;
      }
      try {
        results[kind] = await benchKind(kind, gql, x, { uuid: String(record.uuid), vdi }, work);
      } catch (error) {
        console.log(`${kind}: failed: ${(error as Error).message.slice(0, 2000)}`);
      }
    }
    const load = (await readFile("/proc/loadavg", "utf8")).split(" ").slice(0, 3).join(" ");
    console.log(`load at the end: ${load} (shared machine: figures are noisy)`);
    console.log(JSON.stringify(results));
  } catch (error) {
    for (const child of children) console.error(`--- output of pid ${child.process.pid} ---\n${child.output().slice(-5000)}`);
    throw error;
  } finally {
    await xapi?.disconnect().catch(() => undefined);
    for (const child of children.reverse()) await child.stop();
    await postgres.stop();
    // The cluster may live outside `work` (RunningPostgres.dataDir).
    await rm(postgres.dataDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
}

await main();
