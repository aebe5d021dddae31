/**
 * `npm run bench:cluster`: one api process and two workers (CAIRN_ROLE, README "Several instances") on one Postgres back
 * up 20 lab VMs in one FULL job, at the job's concurrency 1 and then 4 (each worker takes WORKER_VMS=4 VMs at once).
 * Prints, per concurrency, the run's time (started -> ended, database clock), the bytes moved and MB/s, and which worker
 * backed up how many VMs; the last line is JSON.
 *
 * Settings (environment): BENCH_VMS (20), BENCH_DISK_MB (32, each VM's disk), BENCH_ROUNDS (1 run per concurrency).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { startEmbeddedPostgres } from "../server/db/embedded-postgres.js";
import { startCairnCluster, cloneLabVms } from "../test/support/cairn-cluster.js";
import { eventually } from "../test/support/eventually.js";
import { freePort } from "./cairn-child.js";

const VMS = Number(process.env.BENCH_VMS ?? 20);
const DISK_MB = Number(process.env.BENCH_DISK_MB ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);
const ENDED = new Set(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);

// A throw-away PostgreSQL of the bench's own: the three processes share it, as they would share an operator's.
const work = await mkdtemp(join(tmpdir(), "cairn-bench-cluster-"));
const postgres = await startEmbeddedPostgres({ dataDir: join(work, "pg"), port: await freePort(), password: "bench" });
let vmUuids: string[] = [];
const cluster = await startCairnCluster({
  database: async () => {
    const admin = new pg.Client({ connectionString: postgres.connectionString("postgres") });
    await admin.connect();
    await admin.query("CREATE DATABASE cairn_bench_cluster").finally(() => admin.end());
    return { url: postgres.connectionString("cairn_bench_cluster"), drop: async () => undefined };
  },
  workers: 2,
  workerVms: 4,
  labDiskMb: DISK_MB,
  logLevel: "warn",
  prepare: async (c) => void (vmUuids = await cloneLabVms(c, VMS, "bench")),
});
const results: Record<string, unknown>[] = [];
try {
  const { remotes } = await cluster.gql<{ remotes: { id: string; name: string }[] }>("{ remotes { id name } }");
  const remoteId = remotes.find((r) => r.name === "local")!.id;
  for (const concurrency of [1, 4]) {
    const { createJob: job } = await cluster.gql<{ createJob: { id: string } }>(
      "mutation($input: JobInput!) { createJob(input: $input) { id } }",
      {
        input: {
          name: `bench c${concurrency}`,
          mode: "FULL",
          selection: { vmUuids },
          remoteIds: [remoteId],
          settings: { concurrency },
        },
      },
    );
    for (let round = 0; round < ROUNDS; round++) {
      const launched = Date.now();
      const { runJob } = await cluster.gql<{ runJob: { id: string } }>("mutation($id: ID!) { runJob(id: $id) { id } }", { id: job.id });
      const run = await eventually(
        `the concurrency ${concurrency} run to end`,
        async () => {
          const row = await cluster.db.run.findUniqueOrThrow({ where: { id: runJob.id } });
          if (!ENDED.has(row.status)) throw new Error(`still ${row.status}`);
          return row;
        },
        { timeoutMs: 3_600_000, intervalMs: 250 },
      );
      const wallSeconds = (Date.now() - launched) / 1000;
      if (run.status !== "SUCCESS") {
        const failed = await cluster.db.task.findMany({
          where: { runId: run.id, status: { not: "SUCCESS" } },
          select: { kind: true, name: true, status: true, message: true },
        });
        const detail = failed.map((t) => `\n  ${t.kind} ${t.name}: ${t.status} ${t.message ?? ""}`).join("");
        throw new Error(`the run ended ${run.status}: ${run.error}${detail}`);
      }
      const seconds = (run.endedAt!.getTime() - run.startedAt!.getTime()) / 1000;
      const bytes = Number(run.transferredBytes);
      const vmTasks = await cluster.db.task.findMany({ where: { runId: run.id, kind: "vm" }, select: { result: true } });
      const byWorker: Record<string, number> = {};
      for (const task of vmTasks) {
        const worker = (task.result as { worker?: string } | null)?.worker ?? "?";
        const name = cluster.workers.find((w) => worker.split("/")[1] === String(w.pid))?.name ?? worker;
        byWorker[name] = (byWorker[name] ?? 0) + 1;
      }
      const result = {
        concurrency,
        round: round + 1,
        vms: VMS,
        seconds: Number(seconds.toFixed(2)),
        wallSeconds: Number(wallSeconds.toFixed(2)),
        bytes,
        mbPerSecond: Number((bytes / 1e6 / seconds).toFixed(1)),
        vmsByWorker: byWorker,
      };
      results.push(result);
      console.log(
        `concurrency ${concurrency}: ${VMS} VMs x ${DISK_MB} MiB in ${result.seconds} s (${result.wallSeconds} s from the launch), ` +
          `${(bytes / 1e6).toFixed(0)} MB at ${result.mbPerSecond} MB/s; VMs by worker ${JSON.stringify(byWorker)}`,
      );
    }
  }
} finally {
  await cluster.stop();
  await postgres.stop();
  // The cluster may live outside `work` (RunningPostgres.dataDir).
  await rm(postgres.dataDir, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
}
const best = (c: number) => Math.min(...results.filter((r) => r.concurrency === c).map((r) => r.seconds as number));
console.log(
  JSON.stringify({
    bench: "cluster",
    workers: 2,
    vms: VMS,
    diskMb: DISK_MB,
    results,
    speedup4over1: Number((best(1) / best(4)).toFixed(2)),
  }),
);
