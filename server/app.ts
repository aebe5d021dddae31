/**
 * Starts every part of Cairn in order (logger, database, secrets, events, pool connections, services, the optional lab, HTTP)
 * and stops them in reverse. `server/main.ts` calls it for `npm start`; tests call it to run a real server in-process.
 */
import { createHmac } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { createServer as createHttpServerNode } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { pino } from "pino";
import { publicUrlOf, type Config } from "./config.js";
import { openDatabase } from "./db/database.js";
import { createBackupExecutor, createBackupVmExecutor } from "./engine/backup-executor.js";
import { createInterruptedRunCleanup } from "./engine/cleanup/interrupted-run-cleanup.js";
import { createRestoreExecutor } from "./engine/restore/restore-executor.js";
import { createHealthCheckExecutor } from "./engine/health-check/health-check-executor.js";
import { createPostBackupHealthCheck } from "./engine/health-check/health-check-after-backup.js";
import { createVerifyExecutor } from "./engine/verify/verify-executor.js";
import { createVerifyJobExecutor } from "./engine/verify/verify-job-executor.js";
import { createMetadataJobExecutor } from "./engine/metadata/metadata-job-executor.js";
import { HistoryRetention } from "./runs/history-retention.js";
import { startRunMachinery } from "./runs/run-machinery.js";
import { startScheduleTicker } from "./scheduler/schedule-ticker.js";
import { createEventBus } from "./events/event-bus.js";
import { buildCairnSchema } from "./graphql/build-schema.js";
import { createHttpServer } from "./http/http-server.js";
import type { RunningLab } from "./lab/index.js";
import { createLogger, type Logger } from "./log.js";
import { CairnError } from "./errors.js";
import { startReportDispatcher } from "./reports/report-dispatcher.js";
import { createSecretBox, loadSecretKey } from "./security/secret-box.js";
import { tlsCertificateFor, type TlsCertificate } from "./security/tls-certificate.js";
import { AuthService } from "./services/auth-service.js";
import { ConfigurationCache } from "./services/configuration-cache.js";
import { createBaseServices, createServices, type BaseServices, type Services } from "./services/services.js";
import { poolAddressKey } from "./services/pool-service.js";
import { PoolRegistry } from "./xapi/pool-registry.js";

export interface RunningCairn {
  url: string;
  port: number;
  log: Logger;
  services: Services;
  labs: RunningLab[];
  /** The admin password when it was generated on this start (printed once). */
  generatedAdminPassword?: string;
  /** The certificate served when HTTPS is on (its fingerprint is printed at start). */
  tls?: TlsCertificate;
  stop(): Promise<void>;
}

export async function startCairn(config: Config, options: { logDestination?: pino.DestinationStream } = {}): Promise<RunningCairn> {
  const started = Date.now();
  const log = createLogger(config.logLevel, options.logDestination);
  // What was started, in order, with its name: stopped in reverse, each step timed in the log.
  const running: { name: string; stop: () => Promise<void> }[] = [];
  const stack = { push: (name: string, stop: () => Promise<void>) => running.push({ name, stop }) };
  const stopAll = async () => {
    for (const { name, stop } of running.reverse()) {
      const begin = Date.now();
      await stop().catch((error) => log.error({ err: error, component: name }, "error while stopping"));
      log.debug({ component: name, ms: Date.now() - begin }, "stopped");
    }
    running.length = 0;
  };
  try {
    // First: a certificate that cannot be used stops the start before anything else is started. A worker serves only its
    // plain /healthz (serveHealthOnly), and needs none.
    const tls = config.role === "worker" ? undefined : await tlsCertificateFor(config);
    const database = await openDatabase(config, log);
    stack.push("database", () => database.close());
    const secretKey = await loadSecretKey(config.secretKey, config.dataDir);
    const secrets = createSecretBox(secretKey);
    const events = await createEventBus(database.connectionString, log);
    stack.push("events", () => events.close());
    const registry = new PoolRegistry(database.db, secrets, log);
    stack.push("pool connections", () => registry.stop());
    const configuration = new ConfigurationCache(events);
    const base = createBaseServices({ db: database.db, log, secrets, registry, configuration });
    const admin = await new AuthService(database.db, log, { sessionHours: config.sessionHours }).ensureAdmin(config.adminPassword);

    const labs: RunningLab[] = [];
    // A worker never starts the lab: the lab is one pool, kept in DATA_DIR/lab, served by the API process of a cluster.
    if (config.lab && config.role !== "worker") {
      const labPassword = createHmac("sha256", secretKey).update("cairn-lab").digest("base64url").slice(0, 24);
      // Loaded only here: a Cairn without the lab never loads it (idle memory, start time).
      const { startLabPools } = await import("./lab/index.js");
      labs.push(
        ...(await startLabPools(config.labPools, {
          dir: path.join(config.dataDir, "lab"),
          port: config.labPort,
          password: labPassword,
          diskSizeBytes: config.labDiskMb * 1024 * 1024,
          log: (message) => log.warn({ component: "lab" }, message),
        })),
      );
      stack.push("lab", async () => void (await Promise.all(labs.map((lab) => lab.stop()))));
    }
    // After the lab is up, so that its pools connect at the first try.
    await registry.start();
    if (labs.length > 0) await registerLab(base, labs, config, admin.created, log);

    const backupDeps = {
      db: database.db,
      registry,
      remotes: base.remotes,
      log,
      healthCheck: createPostBackupHealthCheck({ db: database.db, registry, remotes: base.remotes, log }),
      verify: createVerifyJobExecutor({ db: database.db, registry, remotes: base.remotes, log }),
      metadata: createMetadataJobExecutor({ db: database.db, registry, remotes: base.remotes, secrets, log }),
    };
    // CAIRN_ROLE (README "Several instances"): an api process queues runs and executes none; every other one executes runs and
    // the VMs of any run of the cluster (WORKER_VMS at once).
    const executes = config.role !== "api";
    const machinery = await startRunMachinery({
      db: database.db,
      events,
      log,
      connectionString: database.connectionString,
      database: database.availability,
      worker: executes,
      recovery: executes,
      vmExecutor: executes ? createBackupVmExecutor(backupDeps) : undefined,
      vmSlots: config.workerVms,
      executors: {
        BACKUP: createBackupExecutor(backupDeps),
        RESTORE: createRestoreExecutor({ db: database.db, registry, remotes: base.remotes, log }),
        HEALTH_CHECK: createHealthCheckExecutor({ db: database.db, registry, remotes: base.remotes, log }),
        VERIFY: createVerifyExecutor({ db: database.db, remotes: base.remotes, log }),
      },
      onInterrupted: [createInterruptedRunCleanup({ db: database.db, registry, remotes: base.remotes, log })],
    });
    stack.push("run machinery", () => machinery.stop());
    // In every role: the unique (scheduleId, scheduledFor) of a run makes a fire recorded once however many processes tick.
    const ticker = await startScheduleTicker({ db: database.db, log: log.child({ component: "schedules" }), launcher: machinery.launcher });
    stack.push("schedule ticker", () => ticker.stop());
    const services = createServices(base, { config, db: database.db, log, registry, events, launcher: machinery.launcher });
    if (config.role === "worker") {
      const health = await serveHealthOnly(config, () => database.availability.check(() => database.db.$queryRaw`SELECT 1`), log);
      stack.push("health endpoint", () => health.close());
      log.info({ url: health.url, role: config.role, ms: Date.now() - started }, "Cairn worker is ready");
      return { url: health.url, port: health.port, log, services, labs, stop: stopAll };
    }
    const auditRetention = services.audit.startRetentionSweep();
    stack.push("audit retention", () => auditRetention.stop());
    const historyRetention = new HistoryRetention(database.db, log, { retentionDays: config.historyRetentionDays }).start();
    stack.push("history retention", () => historyRetention.stop());

    const schema = await buildCairnSchema();
    const http = await createHttpServer({
      schema,
      services,
      log,
      maxBodyBytes: config.maxBodyBytes,
      metrics: config.metrics,
      tls,
      // While the database is away this throws a CairnError saying why (restarting, reconnecting): /healthz shows it.
      healthCheck: () => database.availability.check(() => database.db.$queryRaw`SELECT 1`),
    });
    const { port } = await http.listen(config.port, config.host);
    stack.push("http", () => http.close());
    const url = `${tls ? "https" : "http"}://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
    // After HTTP: the links in reports need the port. Stopped first: a run ended during the stop is reported by another
    // process, or by the sweep of the next start.
    const reports = startReportDispatcher({
      db: database.db,
      events,
      log,
      publicUrl: publicUrlOf(config, port),
      smtp: { url: config.smtpUrl, from: config.smtpFrom },
      webhook: { allowPrivate: config.reportWebhookAllowPrivate },
    });
    stack.push("reports", () => reports.stop());
    if (tls) {
      const { fingerprint, selfSigned, created, certPath, validTo } = tls;
      log.info({ tls: { fingerprint, selfSigned, created, certificate: certPath, validTo } }, "serving HTTPS");
    }
    log.info({ url, ms: Date.now() - started, embeddedDatabase: database.embedded, lab: labs.map((l) => l.url) }, "Cairn is ready");
    return { url, port, log, services, labs, generatedAdminPassword: admin.generatedPassword, tls, stop: stopAll };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/**
 * A worker's only HTTP endpoint: /healthz for a supervisor or a load balancer's probe (200 `{"status":"ok"}`, or 503 with
 * the reason while the database is away); everything else is 404. Plain HTTP: it tells nothing but "up".
 */
async function serveHealthOnly(
  config: Config,
  check: () => Promise<unknown>,
  log: Logger,
): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const server = createHttpServerNode((req, res) => {
    if (req.method !== "GET" || req.url?.split("?")[0] !== "/healthz") return void res.writeHead(404).end();
    check().then(
      () => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ok", role: "worker" })),
      (error: unknown) => {
        log.warn({ err: error }, "health check failed");
        const reason = error instanceof CairnError ? error.message : "database unreachable";
        res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ status: "unavailable", error: reason }));
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  return {
    url,
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Keeps a pool registered for each lab pool (its URL follows the lab's port), and on first start adds a local remote. */
async function registerLab(services: BaseServices, labs: RunningLab[], config: Config, firstStart: boolean, log: Logger): Promise<void> {
  const pools = await services.pools.list();
  for (const lab of labs) {
    const input = { name: lab.poolName, url: lab.url, username: lab.user, password: lab.password, allowUnauthorized: false };
    // By name, or at the lab's address under another name (a pool is connected once: a second connect is a CONFLICT).
    const existing = pools.find((p) => p.name === lab.poolName) ?? pools.find((p) => poolAddressKey(p.url) === poolAddressKey(lab.url));
    if (!existing) await services.pools.connect(input);
    else if (poolAddressKey(existing.url) !== poolAddressKey(lab.url)) await services.pools.update(existing.id, input);
  }
  if (firstStart && (await services.remotes.list()).length === 0) {
    const location = path.join(config.dataDir, "backups");
    await mkdir(location, { recursive: true });
    await services.remotes.create({ name: "local", kind: "LOCAL", location, enabled: true });
    log.info({ location }, "registered the local remote");
  }
}
