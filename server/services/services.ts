/** The services the API calls, built once by the composition root (server/main.ts). */
import type { Config } from "../config.js";
import type { Db } from "../db/prisma.js";
import type { EventBus } from "../events/event-bus.js";
import type { Logger } from "../log.js";
import type { SecretBox } from "../security/secret-box.js";
import type { RunLauncher } from "../runs/run-launcher.js";
import type { PoolRegistry } from "../xapi/pool-registry.js";
import { AuthService } from "./auth-service.js";
import { JobService } from "./job-service.js";
import { PoolService } from "./pool-service.js";
import { RemoteService } from "./remote-service.js";
import { RestorePointService } from "./restore-point-service.js";
import type { RestoreService } from "./restore-service.js";
import type { HealthCheckService } from "./health-check-service.js";
import type { VerifyService } from "./verify-service.js";
import type { FileRestoreService } from "../file-restore/file-restore-service.js";
import { RunService } from "./run-service.js";
import { StatsService } from "./stats-service.js";

export interface Services {
  auth: AuthService;
  pools: PoolService;
  remotes: RemoteService;
  jobs: JobService;
  runs: RunService;
  restorePoints: RestorePointService;
  stats: StatsService;
  events: EventBus;
  /** Set by the composition root once the run machinery is started (absent in a process that takes no runs). */
  runLauncher?: RunLauncher;
  /** restoreVm: set by the composition root with the run machinery. */
  restore?: RestoreService;
  /** checkRestorePoint: set by the composition root with the run machinery. */
  healthChecks?: HealthCheckService;
  /** verifyRestorePoint: set by the composition root with the run machinery. */
  verify?: VerifyService;
  /** browseRestorePoint, restoreFiles and the /download route: set by the composition root. */
  fileRestore?: FileRestoreService;
}

export function createServices(deps: { config: Config; db: Db; log: Logger; secrets: SecretBox; registry: PoolRegistry; events: EventBus }): Services {
  const pools = new PoolService(deps.db, deps.registry, deps.secrets);
  const remotes = new RemoteService(deps.db, deps.secrets);
  return {
    auth: new AuthService(deps.db, deps.log, { sessionHours: deps.config.sessionHours }),
    pools,
    remotes,
    jobs: new JobService(deps.db, pools),
    runs: new RunService(deps.db, deps.events),
    restorePoints: new RestorePointService(deps.db, { registry: deps.registry, remotes }),
    stats: new StatsService(deps.db),
    events: deps.events,
  };
}
