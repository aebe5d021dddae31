/**
 * Benchmark of history at scale (issue 14): a throw-away embedded PostgreSQL, migrated as the server migrates it, seeded
 * straight in SQL (INSERT ... SELECT over generate_series) with BENCH_HISTORY_RUNS runs (default 1,000,000) of ~200 jobs
 * over ~1,000 VMs across a year, 10 tasks per run, and 30 restore points per VM; then VACUUM ANALYZE, as autovacuum would
 * have left a year-old table.
 *
 * What is timed is what a client waits for: a real Cairn server (the built server as `npm start` runs it, a child process
 * on that database, DATABASE_URL; BENCH_CPU_PROF=<dir> profiles it) answering
 * GraphQL over HTTP, with the dashboard's own runs query (totalCount, pageInfo and the run summary with its job): the
 * resolvers, the per-row field resolvers and the serialisation count as well as the SQL. Beside it, the same service call
 * made in this process on a Prisma client (`service` figures): the difference is the API's own cost. p50/p95 over
 * BENCH_HISTORY_SAMPLES samples (default 30) after 3 warm-ups, one request at a time.
 *
 * The SQL each runs-page variant sends (captured from Prisma's query log) and the stats queries are EXPLAINed (ANALYZE,
 * BUFFERS) to stderr. The CSV export: the server's `exportRuns` link read to the end, every run (a COPY of the same columns
 * when the server has none: `csvExport.source` says which). The last line of stdout is one JSON object.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { startEmbeddedPostgres } from "../server/db/embedded-postgres.js";
import { migrate } from "../server/db/migrate.js";
import { createPrismaClient, type Db } from "../server/db/prisma.js";
import { backupStatsSql, vmProtectionSql } from "../server/db/stats.sql.js";
import { createLogger } from "../server/log.js";
import { HistoryRetention } from "../server/runs/history-retention.js";
import { createSecretBox } from "../server/security/secret-box.js";
import { RunService, type RunFilter } from "../server/services/run-service.js";
import { StatsService } from "../server/services/stats-service.js";
import { encodeCursor, type PageArgs } from "../server/services/pagination.js";
import { RunsExport } from "../server/services/runs-export.js";
import type { EventBus } from "../server/events/event-bus.js";
import { SERVER_ENV, SERVER_NODE_FLAGS, buildServerIfStale } from "../scripts/build-server.js";
import { freePort } from "./cairn-child.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const CPU_PROF = process.env.BENCH_CPU_PROF;
const RUNS = Math.max(1000, Number(process.env.BENCH_HISTORY_RUNS ?? 1_000_000));
const TASKS_PER_RUN = 10;
const JOBS = 200;
const VMS = 1000;
const POINTS_PER_VM = 30;
const SAMPLES = Math.max(5, Number(process.env.BENCH_HISTORY_SAMPLES ?? 30));
const WARMUP = 3;
const BUDGET_MS = 60_000;
const ADMIN_PASSWORD = "bench-admin-password";
const SECRET_KEY = "cd".repeat(32);
const DAY_MS = 86_400_000;

const log = (message: string) => process.stderr.write(`${message}\n`);
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

interface Timing {
  p50Ms: number;
  p95Ms: number;
}

/**
 * p50/p95 of `fn` over `samples` calls after the warm-up; a query taking seconds stops at BUDGET_MS (with at least 5
 * samples), or a slow query would hold the benchmark for many minutes.
 */
async function timeIt(fn: () => Promise<unknown>, samples = SAMPLES): Promise<Timing> {
  for (let i = 0; i < WARMUP; i++) await fn();
  const times: number[] = [];
  const deadline = Date.now() + BUDGET_MS;
  for (let i = 0; i < samples && (i < 5 || Date.now() < deadline); i++) {
    const start = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  return { p50Ms: round(percentile(times, 50)), p95Ms: round(percentile(times, 95)) };
}

/**
 * Seeds the history. Indexes and foreign keys of Run and Task are dropped first and rebuilt after (from their own
 * definitions, read back from the catalog), as a bulk load does: the indexes measured are exactly the migrations' ones.
 */
async function seed(client: pg.Client): Promise<void> {
  const box = createSecretBox(Buffer.from(SECRET_KEY, "hex"));
  await client.query("SELECT setseed(0.14)");
  await client.query(
    `INSERT INTO "Pool" (id, name, url, username, "passwordSealed", status, "updatedAt")
     VALUES (md5('pool')::uuid, 'bench-pool', 'https://127.0.0.1:9/', 'root', $1, 'DISCONNECTED', now())`,
    [box.seal("unused")],
  );
  await client.query(`
    INSERT INTO "VmInventory" (uuid, "poolId", name, tags, "powerState", "lastSeenAt")
    SELECT md5('vm' || v)::uuid::text, md5('pool')::uuid,
           (ARRAY['web', 'db', 'mail', 'app', 'cache', 'ci', 'files', 'dns'])[1 + v % 8] || '-' || lpad(v::text, 4, '0'),
           '{}', 'Running', now()
    FROM generate_series(0, ${VMS - 1}) v`);
  // Job j backs up the 5 VMs 5j..5j+4.
  await client.query(`
    INSERT INTO "Job" (id, name, mode, selection, "srUuids", settings, "updatedAt")
    SELECT md5('job' || j)::uuid,
           (ARRAY['nightly', 'hourly', 'weekly', 'offsite', 'replica'])[1 + j % 5] || '-' || lpad(j::text, 3, '0'),
           (CASE WHEN j % 4 = 0 THEN 'FULL' ELSE 'DELTA' END)::"BackupMode",
           jsonb_build_object('vmUuids', (SELECT jsonb_agg(md5('vm' || (j * 5 + k))::uuid::text) FROM generate_series(0, 4) k)),
           '{}', '{}', now()
    FROM generate_series(0, ${JOBS - 1}) j`);

  const dropped = await dropIndexes(client, ["Run", "Task"]);
  // The rollups' triggers (migration run_rollups) recompute each touched slot through the createdAt index dropped above: they
  // are rebuilt once after the load instead, as a restore of a dump would.
  await client.query(`ALTER TABLE "Run" DISABLE TRIGGER USER`);
  // So are the runs' copies of their tasks' messages (migration run_task_messages), whose trigger reads a run's tasks through
  // the runId index.
  await client.query(`ALTER TABLE "Task" DISABLE TRIGGER USER`);
  let started = Date.now();
  // A year of runs, oldest first, evenly spread; 92 % SUCCESS, 4 % FAILURE, 1.5 % INTERRUPTED, 1.5 % SKIPPED, 1 % CANCELLED;
  // 2 % are restores or health checks.
  await client.query(`
    INSERT INTO "Run" (id, kind, "jobId", trigger, status, "createdAt", "startedAt", "endedAt", error, progress,
                       "transferredBytes", "vmsTotal", "vmsSucceeded", "vmsFailed", "vmUuids", "reportedAt", "workerId")
    SELECT md5('run' || n)::uuid, kind::"RunKind", md5('job' || job)::uuid, trigger::"TriggerKind", status::"RunStatus",
           created, created + interval '2 seconds', created + make_interval(secs => 60 + r3 * 3600),
           CASE status
             WHEN 'FAILURE' THEN failed || ' of 5 VMs failed: ' ||
               (ARRAY['the export stopped: connection reset by the pool (ECONNRESET)',
                      'remote is full: 0 bytes free on the target',
                      'snapshot failed: SR_BACKEND_FAILURE_44 (There is insufficient space)',
                      'the pool did not answer within 300 seconds',
                      'VDI is in use by another operation (VDI_IN_USE)'])[1 + (n % 5)]
             WHEN 'INTERRUPTED' THEN 'Interrupted: its Cairn process stopped at ' || to_char(created, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '.'
             WHEN 'CANCELLED' THEN 'Cancelled by admin.'
             ELSE NULL END,
           1,
           CASE WHEN status IN ('SUCCESS', 'FAILURE') THEN (r4 * 40e9)::bigint ELSE 0 END,
           5, 5 - failed, failed,
           ARRAY(SELECT md5('vm' || (job * 5 + k))::uuid::text FROM generate_series(0, 4) k),
           created + interval '2 hours', 'bench'
    FROM (
      SELECT n, r3, r4, job,
             timestamp '${new Date().toISOString().slice(0, 19)}' - make_interval(secs => (${RUNS} - n) * (365.0 * 86400 / ${RUNS})) AS created,
             CASE WHEN r1 < 0.92 THEN 'SUCCESS' WHEN r1 < 0.96 THEN 'FAILURE' WHEN r1 < 0.975 THEN 'INTERRUPTED'
                  WHEN r1 < 0.99 THEN 'SKIPPED' ELSE 'CANCELLED' END AS status,
             CASE WHEN r2 < 0.98 THEN 'BACKUP' WHEN r2 < 0.99 THEN 'RESTORE' ELSE 'HEALTH_CHECK' END AS kind,
             CASE WHEN r2 < 0.98 THEN 'SCHEDULE' ELSE 'MANUAL' END AS trigger,
             CASE WHEN r1 >= 0.92 AND r1 < 0.96 THEN 1 + floor(r3 * 3)::int ELSE 0 END AS failed
      FROM (SELECT n, random() AS r1, random() AS r2, random() AS r3, random() AS r4, (n::bigint * 7919 % ${JOBS})::int AS job
            FROM generate_series(1, ${RUNS}) n) raw
    ) s`);
  log(`seeded ${RUNS} runs in ${round((Date.now() - started) / 1000)} s`);
  started = Date.now();
  // Per VM of a run: its "vm" task and its transfer child. The first `vmsFailed` VMs failed with the run's error; an
  // interrupted run's VMs after the first were interrupted; sizes add up to the run's transferredBytes.
  await client.query(`
    INSERT INTO "Task" (id, "runId", "parentId", position, kind, name, status, progress, "startedAt", "endedAt", message,
                        warnings, "sizeBytes", "vmUuid")
    SELECT md5(r.id::text || p)::uuid, r.id,
           CASE WHEN p % 2 = 1 THEN md5(r.id::text || (p - 1))::uuid END,
           p, CASE WHEN p % 2 = 0 THEN 'vm' ELSE 'transfer' END,
           CASE WHEN p % 2 = 0 THEN 'VM ' || r."vmUuids"[1 + p / 2] ELSE 'Export to the remote' END,
           t.status::"RunStatus", 1, r."startedAt", r."endedAt",
           CASE WHEN t.status = 'FAILURE' THEN substr(r.error, strpos(r.error, ':') + 2) END,
           '{}', CASE WHEN t.status = 'SUCCESS' THEN r."transferredBytes" / 5 END, r."vmUuids"[1 + p / 2]
    FROM "Run" r CROSS JOIN generate_series(0, ${TASKS_PER_RUN - 1}) p
    CROSS JOIN LATERAL (SELECT CASE
        WHEN r.status = 'FAILURE' AND p / 2 < r."vmsFailed" THEN 'FAILURE'
        WHEN r.status = 'INTERRUPTED' AND p / 2 > 0 THEN 'INTERRUPTED'
        WHEN r.status IN ('SKIPPED', 'CANCELLED') THEN r.status::text
        ELSE 'SUCCESS' END AS status) t`);
  log(`seeded ${RUNS * TASKS_PER_RUN} tasks in ${round((Date.now() - started) / 1000)} s`);
  started = Date.now();
  await restoreIndexes(client, dropped);
  log(`rebuilt the indexes and foreign keys of Run and Task in ${round((Date.now() - started) / 1000)} s`);
  started = Date.now();
  await client.query(`SELECT "run_task_messages_rebuild"()`);
  await client.query(`ALTER TABLE "Task" ENABLE TRIGGER USER`);
  log(`copied the tasks' messages to their runs in ${round((Date.now() - started) / 1000)} s`);
  started = Date.now();
  await client.query(`SELECT "run_rollups_rebuild"()`);
  await client.query(`ALTER TABLE "Run" ENABLE TRIGGER USER`);
  log(`rebuilt the rollups of Run (RunSlotStats, RunCount) in ${round((Date.now() - started) / 1000)} s`);
  // A restore point per VM per day for the last 30 days; 2 % failed their health check (vmProtection skips those).
  await client.query(`
    INSERT INTO "RestorePoint" (id, kind, "vmUuid", "vmName", timestamp, "sizeBytes", "jobId", "verificationStatus", "runId")
    SELECT md5('rp' || v || '-' || d)::uuid, 'VHD_CHAIN', md5('vm' || v)::uuid::text, 'vm-' || v,
           now() - make_interval(days => d, hours => v % 24), (random() * 50e9)::bigint, md5('job' || (v / 5))::uuid,
           (CASE WHEN random() < 0.02 THEN 'FAILED' ELSE 'UNVERIFIED' END)::"VerificationStatus", NULL
    FROM generate_series(0, ${VMS - 1}) v CROSS JOIN generate_series(0, ${POINTS_PER_VM - 1}) d`);
}

interface DroppedIndexes {
  indexes: string[];
  constraints: string[];
}

async function dropIndexes(client: pg.Client, tables: string[]): Promise<DroppedIndexes> {
  const { rows: fks } = await client.query<{ table: string; name: string; def: string }>(
    `SELECT conrelid::regclass::text AS table, conname AS name, pg_get_constraintdef(oid) AS def
     FROM pg_constraint WHERE contype = 'f' AND (conrelid::regclass::text = ANY($1) OR confrelid::regclass::text = ANY($1))`,
    [tables.map((t) => `"${t}"`)],
  );
  const { rows: indexes } = await client.query<{ name: string; def: string }>(
    `SELECT i.indexname AS name, i.indexdef AS def FROM pg_indexes i
     WHERE i.schemaname = 'public' AND i.tablename = ANY($1)
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname AND c.contype IN ('p', 'u'))`,
    [tables],
  );
  const { rows: keys } = await client.query<{ table: string; name: string; def: string }>(
    `SELECT conrelid::regclass::text AS table, conname AS name, pg_get_constraintdef(oid) AS def
     FROM pg_constraint WHERE contype IN ('p', 'u') AND conrelid::regclass::text = ANY($1)`,
    [tables.map((t) => `"${t}"`)],
  );
  for (const fk of fks) await client.query(`ALTER TABLE ${fk.table} DROP CONSTRAINT "${fk.name}"`);
  for (const index of indexes) await client.query(`DROP INDEX "${index.name}"`);
  for (const key of keys) await client.query(`ALTER TABLE ${key.table} DROP CONSTRAINT "${key.name}"`);
  return {
    indexes: indexes.map((i) => i.def),
    constraints: [...keys, ...fks].map((c) => `ALTER TABLE ${c.table} ADD CONSTRAINT "${c.name}" ${c.def}`),
  };
}

async function restoreIndexes(client: pg.Client, dropped: DroppedIndexes): Promise<void> {
  for (const statement of [...dropped.constraints.filter((c) => !c.includes("FOREIGN KEY")), ...dropped.indexes]) {
    await client.query(statement);
  }
  for (const statement of dropped.constraints.filter((c) => c.includes("FOREIGN KEY"))) await client.query(statement);
}

interface CairnServer {
  url: string;
  stop(): Promise<void>;
}

/** The built server as `npm start` runs it (its node flags and malloc settings); BENCH_CPU_PROF=<dir> profiles it. */
async function startCairn(databaseUrl: string, dataDir: string): Promise<CairnServer> {
  buildServerIfStale();
  const profile = CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF}`] : [];
  const extra = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const proc: ChildProcess = spawn(process.execPath, [...SERVER_NODE_FLAGS, ...profile, ...extra, join(REPO, "dist/server/main.js")], {
    cwd: REPO,
    env: {
      ...process.env,
      ...SERVER_ENV,
      PORT: "0",
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      ADMIN_PASSWORD,
      SECRET_KEY,
      LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  proc.stdout!.on("data", (chunk) => void (text = (text + String(chunk)).slice(-100_000)));
  proc.stderr!.on("data", (chunk) => void (text = (text + String(chunk)).slice(-100_000)));
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 300_000;
  for (;;) {
    const match = text.match(/Cairn is ready at (http:\/\/[^\s)]+)/);
    if (match) return { url: match[1], stop };
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`the Cairn server exited before it was ready:\n${text}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the Cairn server was not ready after 300 s:\n${text}`);
    }
    await sleep(100);
  }
}

/** The dashboard's runs query (dashboard/src/lib/api/operations-runs.ts: RunsQuery with RunSummaryFields). */
const RUNS_QUERY = `
  query Runs($filter: RunFilter, $first: Int, $after: String) {
    runs(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        id kind status trigger createdAt startedAt endedAt durationSeconds error progress transferredBytes
        vmsTotal vmsSucceeded vmsFailed job { id name }
      }
    }
  }`;
const STATS_QUERY = `
  query Stats($from: DateTime!, $to: DateTime!) {
    backupStats(from: $from, to: $to, groupBy: DAY) { key label runs succeeded failed bytes durationSeconds }
  }`;
const PROTECTION_QUERY = `
  query Protection { vmProtection(olderThanHours: 24) { vm { uuid name } lastGoodRestorePoint { id timestamp } ageHours protected } }`;
/** What the dashboard's overview asks (dashboard/src/lib/api/operations-stats.ts): each VM's pool too. */
const PROTECTION_DASHBOARD_QUERY = `
  query Protection { vmProtection(olderThanHours: 24) {
    protected ageHours vm { uuid name powerState tags pool { id name } } lastGoodRestorePoint { id timestamp job { name } }
  } }`;

interface Measured {
  p50Ms: number;
  p95Ms: number;
  serviceP50Ms: number;
  serviceP95Ms: number;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "cairn-bench-history-"));
  const postgres = await startEmbeddedPostgres({
    dataDir: join(work, "pg"),
    port: await freePort(),
    password: "bench",
    // Durability is not what is measured (the data is thrown away); the load's WAL would checkpoint every few seconds.
    settings: { fsync: "off", synchronous_commit: "off", full_page_writes: "off", max_wal_size: "8GB", maintenance_work_mem: "512MB" },
  });
  const databaseUrl = postgres.connectionString("postgres");
  const client = new pg.Client({ connectionString: databaseUrl });
  let server: CairnServer | undefined;
  let prisma: Db | undefined;
  try {
    await migrate(databaseUrl);
    await client.connect();
    const seedStart = Date.now();
    await seed(client);
    const seedSeconds = round((Date.now() - seedStart) / 1000);
    const started = Date.now();
    await client.query("VACUUM ANALYZE");
    log(`seeded in ${seedSeconds} s, VACUUM ANALYZE in ${round((Date.now() - started) / 1000)} s`);
    const { rows: sizes } = await client.query<{ name: string; size: string }>(
      `SELECT relname AS name, pg_size_pretty(pg_total_relation_size(oid)) AS size FROM pg_class WHERE relname IN ('Run', 'Task')`,
    );
    log(`sizes (with indexes): ${sizes.map((s) => `${s.name} ${s.size}`).join(", ")}`);

    // The SQL Prisma sends, for EXPLAIN.
    const captured: { query: string; params: string }[] = [];
    prisma = createPrismaClient(databaseUrl, { onQuery: (event) => captured.push({ query: event.query, params: event.params }) });
    const runs = new RunService(prisma, {} as EventBus);
    const stats = new StatsService(prisma);

    const jobId = (await client.query<{ id: string }>(`SELECT md5('job' || 42)::uuid AS id`)).rows[0].id;
    const deep = (
      await client.query<{ id: string; createdAt: Date }>(
        `SELECT id, "createdAt" FROM "Run" ORDER BY "createdAt" DESC, id DESC OFFSET ${Math.floor(RUNS * 0.7)} LIMIT 1`,
      )
    ).rows[0];
    const deepCursor = encodeCursor(deep.createdAt, deep.id);
    const now = new Date();
    const yearAgo = new Date(now.getTime() - 365 * DAY_MS);
    const variants: { key: string; filter: RunFilter; page: PageArgs }[] = [
      { key: "runsFirstPage", filter: {}, page: { first: 50 } },
      { key: "runsFiltered", filter: { jobId, status: ["FAILURE", "INTERRUPTED"] }, page: { first: 50 } },
      { key: "runsStatusFiltered", filter: { status: ["FAILURE"] }, page: { first: 50 } },
      // A VM's name (as people type it): the VM inventory's names, then the runs that selected those VMs.
      { key: "runsSearch", filter: { search: "web-0040" }, page: { first: 50 } },
      // A word of a task's message only (seeded from the run's error after its first colon), a kind, a status.
      { key: "runsSearchTaskMessage", filter: { search: "ECONNRESET" }, page: { first: 50 } },
      { key: "runsSearchKind", filter: { search: "restore" }, page: { first: 50 } },
      { key: "runsSearchStatus", filter: { search: "interrupted" }, page: { first: 50 } },
      { key: "runsDeepPage", filter: {}, page: { first: 50, after: deepCursor } },
    ];

    for (const variant of variants) {
      captured.length = 0;
      // The count is lazy (read only when asked for): the dashboard asks for it, so it is read here too.
      await (await runs.list(variant.filter, variant.page)).totalCount;
      for (const { query, params } of captured) await explain(client, `${variant.key}`, query, JSON.parse(params) as unknown[]);
    }
    await explainSql(client, "statsByDay", backupStatsSql(yearAgo, now, "DAY", "UTC")).catch((error) => log(`statsByDay: ${error}`));
    await explainSql(client, "statsByDay in Asia/Kolkata", backupStatsSql(yearAgo, now, "DAY", "Asia/Kolkata")).catch((error) =>
      log(`statsByDay: ${error}`),
    );
    // What the rollup replaced: the same figures read from every run of the year (the query before migration run_rollups).
    await explain(
      client,
      "statsByDay from every run (before the rollup)",
      `SELECT to_char(date_trunc('day', r."createdAt"), 'YYYY-MM-DD') AS key, count(*) AS runs,
              count(*) FILTER (WHERE r.status = 'SUCCESS') AS succeeded, count(*) FILTER (WHERE r.status IN ('FAILURE', 'INTERRUPTED')) AS failed,
              coalesce(sum(r."transferredBytes"), 0)::bigint AS bytes, coalesce(sum(extract(epoch FROM r."endedAt" - r."startedAt")), 0)::float8 AS d,
              avg(extract(epoch FROM r."endedAt" - r."startedAt"))::float8 AS a, max(extract(epoch FROM r."endedAt" - r."startedAt"))::float8 AS m
       FROM "Run" r WHERE r.kind = 'BACKUP' AND r."createdAt" >= $1 AND r."createdAt" < $2 GROUP BY 1 ORDER BY 1`,
      [yearAgo.toISOString(), now.toISOString()],
    ).catch((error) => log(`statsByDay from every run: ${error}`));
    await explainSql(client, "vmProtection", vmProtectionSql(null, now)).catch((error) => log(`vmProtection: ${error}`));

    // The CSV export in this process (the service the route calls), into a sink that counts: its throughput without HTTP,
    // and the plan of its keyset page query deep in (the last page Prisma sent).
    const exportInProcess = await (async () => {
      captured.length = 0;
      let bytes = 0;
      const sink = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          bytes += chunk.length;
          callback();
        },
      });
      const begin = process.hrtime.bigint();
      // The newest tenth of the history (the server's export below reads all of it).
      const from = new Date(now.getTime() - 36.5 * DAY_MS);
      const rows = await new RunsExport(prisma).stream(await runs.where({ from }), "CSV", sink);
      const seconds = Number(process.hrtime.bigint() - begin) / 1e9;
      const pages = captured.filter((c) => /FROM "public"."Run"/.test(c.query) && /ORDER BY/.test(c.query));
      const deepest = pages.at(-1);
      if (deepest) await explain(client, "csvExport page (deepest)", deepest.query, JSON.parse(deepest.params) as unknown[]);
      log(`csvExport in process: ${rows} rows, ${round(bytes / 1e6)} MB in ${round(seconds, 2)} s, ${captured.length} queries`);
      return { rowsPerSecond: Math.round(rows / seconds), MBps: round(bytes / 1e6 / seconds) };
    })();

    server = await startCairn(databaseUrl, join(work, "data"));
    let token = "";
    const gql = async (query: string, variables?: Record<string, unknown>) => {
      const response = await fetch(`${server!.url}/graphql`, {
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

    const results: Record<string, unknown> = { runs: RUNS, tasks: RUNS * TASKS_PER_RUN, seedSeconds, samples: SAMPLES };
    {
      // The same first page without totalCount: what the count costs, by difference.
      const api = await timeIt(() => gql(RUNS_QUERY.replace("totalCount", ""), { first: 50 }));
      log(`runsFirstPageWithoutCount: API p50 ${api.p50Ms} ms p95 ${api.p95Ms} ms`);
      results.runsFirstPageWithoutCount = api;
    }
    for (const variant of variants) {
      const api = await timeIt(() => gql(RUNS_QUERY, { filter: variant.filter, first: variant.page.first, after: variant.page.after }));
      const service = await timeIt(async () => (await runs.list(variant.filter, variant.page)).totalCount);
      const page = await gql(RUNS_QUERY, { filter: variant.filter, first: variant.page.first, after: variant.page.after });
      log(`${variant.key}: ${page.runs.nodes.length} rows of ${page.runs.totalCount}; API p50 ${api.p50Ms} ms p95 ${api.p95Ms} ms`);
      results[variant.key] = { ...api, serviceP50Ms: service.p50Ms, serviceP95Ms: service.p95Ms } satisfies Measured;
    }
    // A query that fails is reported as such ({ error }) rather than ending the benchmark: the others still count.
    const guarded = async (key: string, measure: () => Promise<Measured>) => {
      results[key] = await measure().catch((error: unknown) => {
        log(`${key} failed: ${error instanceof Error ? error.message : String(error)}`);
        return { error: error instanceof Error ? error.message.slice(0, 300) : String(error) };
      });
    };
    await guarded("statsByDay", async () => {
      const variables = { from: yearAgo.toISOString(), to: now.toISOString() };
      const api = await timeIt(() => gql(STATS_QUERY, variables));
      const service = await timeIt(() => stats.backupStats(yearAgo, now, "DAY"));
      const days = (await gql(STATS_QUERY, variables)).backupStats.length;
      log(`statsByDay: ${days} days; API p50 ${api.p50Ms} ms p95 ${api.p95Ms} ms`);
      return { ...api, serviceP50Ms: service.p50Ms, serviceP95Ms: service.p95Ms };
    });
    await guarded("vmProtection", async () => {
      const api = await timeIt(() => gql(PROTECTION_QUERY));
      const service = await timeIt(() => stats.vmProtection(null, 24));
      const vms = (await gql(PROTECTION_QUERY)).vmProtection.length;
      log(`vmProtection: ${vms} VMs; API p50 ${api.p50Ms} ms p95 ${api.p95Ms} ms`);
      return { ...api, serviceP50Ms: service.p50Ms, serviceP95Ms: service.p95Ms };
    });
    await guarded("vmProtectionDashboard", async () => {
      const api = await timeIt(() => gql(PROTECTION_DASHBOARD_QUERY));
      const service = await timeIt(() => stats.vmProtection(null, 24));
      log(`vmProtectionDashboard (with each VM's pool and each point's job): API p50 ${api.p50Ms} ms p95 ${api.p95Ms} ms`);
      return { ...api, serviceP50Ms: service.p50Ms, serviceP95Ms: service.p95Ms };
    });
    results.csvExport = {
      ...(await apiCsvExport(gql, server.url).catch(async (error: unknown) => {
        log(`the server's CSV export is not usable (${error instanceof Error ? error.message : String(error)}): measuring a COPY instead`);
        return csvExport(client);
      })),
      serviceRowsPerSecond: exportInProcess.rowsPerSecond,
      serviceMBps: exportInProcess.MBps,
    };
    // Last, as it deletes: history retention catching up on a month (runs older than 335 days), in its batches.
    {
      const retention = new HistoryRetention(prisma, createLogger("silent"), { retentionDays: 335 });
      const begin = process.hrtime.bigint();
      const swept = await retention.sweep(now);
      const seconds = Number(process.hrtime.bigint() - begin) / 1e9;
      const batches = Math.max(1, Math.ceil(swept.runs / 500));
      log(`retention: ${swept.runs} runs and ${swept.tasks} tasks deleted in ${round(seconds, 1)} s (${batches} batches)`);
      results.retentionSweep = {
        runs: swept.runs,
        tasks: swept.tasks,
        seconds: round(seconds),
        runsPerSecond: Math.round(swept.runs / seconds),
        msPerBatch: round((seconds * 1000) / batches),
      };
    }
    // The machine is shared: the load while measuring says how far to trust absolute figures (ratios hold better).
    results.loadAverage = round(loadavg()[0]);
    console.log(JSON.stringify(results));
  } finally {
    await server?.stop().catch(() => undefined);
    await prisma?.$disconnect().catch(() => undefined);
    await client.end().catch(() => undefined);
    await postgres.stop();
    // The cluster may live outside `work` (RunningPostgres.dataDir).
    await rm(postgres.dataDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
}

async function explain(client: pg.Client, label: string, sql: string, params: unknown[]): Promise<void> {
  if (!/^\s*(SELECT|WITH)\b/i.test(sql)) return;
  const { rows } = await client.query<{ "QUERY PLAN": string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params);
  log(`\n--- plan: ${label}\n${sql}\n${JSON.stringify(params)}\n${rows.map((r) => r["QUERY PLAN"]).join("\n")}`);
}

async function explainSql(client: pg.Client, label: string, sql: { text: string; values: unknown[] }): Promise<void> {
  await explain(client, label, sql.text, sql.values);
}

/**
 * The server's export of run history (`exportRuns` then `GET` of its link), every run as CSV, read to the end; rows are
 * counted as lines (no field of this history holds a line break) minus the header.
 */
async function apiCsvExport(
  gql: (query: string, variables?: Record<string, unknown>) => Promise<any>,
  base: string,
): Promise<Record<string, unknown>> {
  const link = (await gql("mutation { exportRuns(format: CSV) { url } }")).exportRuns.url as string;
  const started = process.hrtime.bigint();
  const response = await fetch(new URL(link, base));
  if (response.status !== 200 || !response.body) throw new Error(`GET ${link}: HTTP ${response.status}`);
  let bytes = 0;
  let lines = 0;
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    bytes += chunk.length;
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const rows = lines - 1;
  log(`csvExport (the server's exportRuns): ${rows} rows, ${round(bytes / 1e6)} MB in ${round(seconds, 2)} s`);
  return { source: "exportRuns", rows, rowsPerSecond: Math.round(rows / seconds), MBps: round(bytes / 1e6 / seconds) };
}

/**
 * When the server has no CSV export of run history, the throughput of the database side of one: a COPY of the run
 * columns such an export carries, newest first, every row of the history, read through the driver.
 */
async function csvExport(client: pg.Client): Promise<Record<string, unknown>> {
  const started = process.hrtime.bigint();
  const cursor = `COPY (SELECT r.id, r."createdAt", r."startedAt", r."endedAt", r.kind, r.status, j.name AS job, r."transferredBytes",
                 r."vmsTotal", r."vmsSucceeded", r."vmsFailed", r.error
               FROM "Run" r LEFT JOIN "Job" j ON j.id = r."jobId" ORDER BY r."createdAt" DESC, r.id DESC) TO STDOUT WITH (FORMAT csv, HEADER)`;
  const { rowCount, bytes } = await copyOut(client, cursor);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  log(`csvExport (COPY): ${rowCount} rows, ${round(bytes / 1e6)} MB in ${round(seconds, 2)} s`);
  return { source: "COPY", rows: rowCount, rowsPerSecond: Math.round(rowCount / seconds), MBps: round(bytes / 1e6 / seconds) };
}

/** COPY ... TO STDOUT over the plain protocol: pg has no copy-out without pg-copy-streams, so its raw connection is read. */
async function copyOut(client: pg.Client, sql: string): Promise<{ rowCount: number; bytes: number }> {
  const connection = (client as unknown as { connection: import("node:events").EventEmitter }).connection;
  let bytes = 0;
  const onData = (message: { chunk: Buffer }) => void (bytes += message.chunk.length);
  connection.on("copyData", onData);
  try {
    const result = await client.query(sql);
    return { rowCount: result.rowCount ?? 0, bytes };
  } finally {
    connection.off("copyData", onData);
  }
}

await main();
