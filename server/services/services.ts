/**
 * The services the API calls, composed once by the composition root (server/app.ts) from the parts it started: every member
 * is there from the start, none filled in later.
 */
import type { Config } from "../config.js";
import type { Db } from "../db/prisma.js";
import type { EventBus } from "../events/event-bus.js";
import type { Logger } from "../log.js";
import type { SecretBox } from "../security/secret-box.js";
import type { RunLauncher } from "../runs/run-launcher.js";
import type { PoolRegistry } from "../xapi/pool-registry.js";
import { AuditService } from "./audit-service.js";
import { AuthService } from "./auth-service.js";
import type { ConfigurationCache } from "./configuration-cache.js";
import { JobService } from "./job-service.js";
import { PoolService } from "./pool-service.js";
import { RemoteService } from "./remote-service.js";
import { RestorePointService } from "./restore-point-service.js";
import { RestoreService } from "./restore-service.js";
import { RetentionPreviewService } from "./retention-preview-service.js";
import { HealthCheckService } from "./health-check-service.js";
import { VerifyService } from "./verify-service.js";
import { FileRestoreService } from "../file-restore/file-restore-service.js";
import { RunService } from "./run-service.js";
import { StatsService } from "./stats-service.js";
import { MetricsService } from "./metrics-service.js";
import { MetadataBackupService } from "./metadata-backup-service.js";

export interface Services {
  auth: AuthService;
  pools: PoolService;
  remotes: RemoteService;
  jobs: JobService;
  runs: RunService;
  restorePoints: RestorePointService;
  /** retentionPreview. */
  retentionPreview: RetentionPreviewService;
  stats: StatsService;
  events: EventBus;
  /** Queues runs (runJob); the run machinery's workers, in this process or another, execute them. */
  runLauncher: RunLauncher;
  /** restoreVm. */
  restore: RestoreService;
  /** checkRestorePoint. */
  healthChecks: HealthCheckService;
  /** verifyRestorePoint. */
  verify: VerifyService;
  /** browseRestorePoint, restoreFiles and the /download route. */
  fileRestore: FileRestoreService;
  /** The audit log: every mutation recorded (server/graphql/audit-middleware.ts), auditLog, and its retention sweep. */
  audit: AuditService;
  /** /metrics (Prometheus). */
  metrics: MetricsService;
  /** metadataBackups, restorePoolMetadata, configurationBackups, restoreConfiguration. */
  metadataBackups: MetadataBackupService;
}

/** The services that need no run machinery: the composition root uses them (lab registration) before it starts the machinery. */
export interface BaseServices {
  pools: PoolService;
  configuration?: ConfigurationCache;
  remotes: RemoteService;
  metadataBackups: MetadataBackupService;
}

export function createBaseServices(deps: {
  db: Db;
  log: Logger;
  secrets: SecretBox;
  registry: PoolRegistry;
  /** Where the jobs and remotes lists are kept between changes (none: every read goes to the database). */
  configuration?: ConfigurationCache;
}): BaseServices {
  const remotes = new RemoteService(deps.db, deps.secrets, deps.log, deps.configuration);
  return {
    pools: new PoolService(deps.db, deps.registry, deps.secrets),
    configuration: deps.configuration,
    remotes,
    metadataBackups: new MetadataBackupService({ ...deps, remotes }),
  };
}

export function createServices(
  base: BaseServices,
  deps: { config: Config; db: Db; log: Logger; registry: PoolRegistry; events: EventBus; launcher: RunLauncher },
): Services {
  const { pools, remotes } = base;
  const launcher = deps.launcher;
  return {
    auth: new AuthService(deps.db, deps.log, { sessionHours: deps.config.sessionHours, notices: deps.events }),
    pools,
    remotes,
    jobs: new JobService(deps.db, pools, {
      allowPrivateWebhooks: deps.config.reportWebhookAllowPrivate,
      cache: base.configuration,
    }),
    runs: new RunService(deps.db, deps.events),
    restorePoints: new RestorePointService(deps.db, { registry: deps.registry, remotes }),
    retentionPreview: new RetentionPreviewService(deps.db),
    stats: new StatsService(deps.db),
    events: deps.events,
    runLauncher: launcher,
    restore: new RestoreService({ db: deps.db, registry: deps.registry, launcher }),
    healthChecks: new HealthCheckService({ db: deps.db, launcher }),
    verify: new VerifyService({ db: deps.db, launcher }),
    fileRestore: new FileRestoreService({ db: deps.db, remotes, log: deps.log }),
    audit: new AuditService(deps.db, deps.log, { retentionDays: deps.config.auditRetentionDays }),
    metrics: new MetricsService(deps.db),
    metadataBackups: base.metadataBackups,
  };
}
