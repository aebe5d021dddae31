/**
 * Every setting of Cairn, read from the environment once at start and validated: a bad value stops the start with a message
 * naming the variable, what it holds and what is expected. Nothing else reads `process.env`.
 */
import { hostname } from "node:os";
import path from "node:path";
import { CairnError, ErrorCode } from "./errors.js";

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface Config {
  /** HTTP port of the API and dashboard. @default 4000 */
  port: number;
  /** Address to listen on. @default 127.0.0.1 */
  host: string;
  /** Folder for the embedded database, the secret key, the lab's disks and the default local remote. @default ./data */
  dataDir: string;
  /** PostgreSQL connection string; unset = the embedded database in DATA_DIR/pg. */
  databaseUrl?: string;
  /** Port of the embedded database. @default 54329 */
  databasePort: number;
  /** Password given to the `admin` user created on first start; unset = generated and printed once. */
  adminPassword?: string;
  /** 32-byte key sealing secrets at rest (hex or base64); unset = generated and kept in DATA_DIR/secret.key. */
  secretKey?: Buffer;
  /** Start the XAPI lab in-process and register it (and a local remote) on first start. @default on */
  lab: boolean;
  /** How many independent lab pools. @default 1 */
  labPools: number;
  /** Port of the first lab pool (the next pools use the following ports; 0 = any free port). @default 4001 */
  labPort: number;
  /** Size of each lab VM disk, in MiB. @default 64 */
  labDiskMb: number;
  logLevel: LogLevel;
  /** Lifetime of a login session. @default 12 hours */
  sessionHours: number;
  /** Largest accepted request body. @default 1 MiB */
  maxBodyBytes: number;
  /** How long audit log entries are kept, in days; older ones are deleted by a sweep every few hours. @default 365 */
  auditRetentionDays: number;
  /**
   * How long run history (runs and their tasks) is kept, in days; 0 keeps it forever. Older ended runs that no restore point
   * refers to are deleted by a sweep every few hours. @default 365
   */
  historyRetentionDays: number;
  /**
   * SMTP server of the run reports (`smtp://` or `smtps://`, optionally `user:password@`, port and nodemailer query options).
   * A secret: never logged nor shown back. Unset = reports by email are not sent (a job asking for them gets a warning).
   */
  smtpUrl?: string;
  /** Sender of the run reports. @default cairn@<hostname> */
  smtpFrom: string;
  /** The dashboard's address, for links in reports (no trailing slash); unset = http://HOST:PORT as listened on (see publicUrlOf). */
  publicUrl?: string;
  /**
   * Let report webhooks reach this machine (loopback, unspecified addresses, `localhost`) and the link-local network (cloud
   * metadata services): refused by default, as the typed URL and as its name resolves when sending. @default false
   */
  reportWebhookAllowPrivate: boolean;
  /** `/metrics`: off (404), token (any Cairn session or API token as a Bearer), or public. */
  metrics: MetricsAccess;
  /**
   * HTTPS for the API, graphql-ws and the dashboard: `on`, `off`, or `auto` (HTTPS unless HOST is a loopback address, so
   * that the first start on 127.0.0.1 stays plain http:// and a Cairn reachable from the network never is). @default auto
   */
  tls: TlsMode;
  /** PEM certificate (with its chain) and private key files; unset = a self-signed certificate kept in DATA_DIR/tls. */
  tlsCert?: string;
  tlsKey?: string;
  /**
   * What this process does (README "Several instances"): `api` serves the API, subscriptions and dashboard and queues runs but
   * executes none; `worker` executes runs and serves only /healthz; `all` does both. @default all
   */
  role: CairnRole;
  /** VMs this process backs up at once, whatever their jobs (a job's own concurrency holds across all workers). @default 4 */
  workerVms: number;
}

export type CairnRole = "all" | "api" | "worker";
const ROLES: readonly CairnRole[] = ["all", "api", "worker"];

type Env = Record<string, string | undefined>;

/** The shortest password Cairn accepts, from ADMIN_PASSWORD as from the API (one rule for both). */
export const MIN_PASSWORD_LENGTH = 8;

export type MetricsAccess = "off" | "token" | "public";
const METRICS_ACCESS: readonly MetricsAccess[] = ["off", "token", "public"];

export type TlsMode = "off" | "auto" | "on";
const TLS_MODES: readonly TlsMode[] = ["off", "auto", "on"];

/** What a parser returns for a bad value (a class, so a string setting cannot mistake the reason for its value). */
class Invalid {
  constructor(readonly reason: string) {}
}

const SECRET_VARIABLES = new Set(["SECRET_KEY", "SMTP_URL"]);

const LOG_LEVELS: LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const problems: string[] = [];
  const read = <T>(name: string, fallback: T, parse: (raw: string) => T | Invalid): T => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const parsed = parse(raw.trim());
    if (parsed instanceof Invalid) {
      // A secret's value is never echoed, even a wrong one: the message goes to the console and logs.
      const shown = SECRET_VARIABLES.has(name) ? "(hidden)" : JSON.stringify(raw);
      problems.push(`${name}=${shown}: ${parsed.reason}`);
      return fallback;
    }
    return parsed;
  };
  const integer = (min: number, max: number) => (raw: string) =>
    /^\d+$/.test(raw) && Number(raw) >= min && Number(raw) <= max
      ? Number(raw)
      : new Invalid(`expected a whole number from ${min} to ${max}`);
  const onOff = (raw: string) => {
    const value = raw.toLowerCase();
    if (["on", "true", "1", "yes"].includes(value)) return true;
    if (["off", "false", "0", "no"].includes(value)) return false;
    return new Invalid("expected on or off");
  };

  const dataDir = path.resolve(cwd, env.DATA_DIR || "./data");
  const config: Config = {
    port: read("PORT", 4000, integer(0, 65535)),
    host: env.HOST?.trim() || "127.0.0.1",
    dataDir,
    databaseUrl: undefined,
    databasePort: read("DATABASE_PORT", 54329, integer(1, 65535)),
    adminPassword: env.ADMIN_PASSWORD || undefined,
    secretKey: read<Buffer | undefined>("SECRET_KEY", undefined, parseSecretKey),
    lab: read("LAB", true, onOff),
    labPools: read("LAB_POOLS", 1, integer(1, 8)),
    labPort: read("LAB_PORT", 4001, integer(0, 65535)),
    labDiskMb: read("LAB_DISK_MB", 64, integer(8, 2 * 1024 * 1024)),
    logLevel: read<LogLevel>("LOG_LEVEL", "info", (raw) =>
      LOG_LEVELS.includes(raw as LogLevel) ? (raw as LogLevel) : new Invalid(`expected one of ${LOG_LEVELS.join(", ")}`),
    ),
    sessionHours: read("SESSION_HOURS", 12, integer(1, 24 * 365)),
    maxBodyBytes: read("MAX_BODY_BYTES", 1024 * 1024, integer(1024, 64 * 1024 * 1024)),
    auditRetentionDays: read("AUDIT_RETENTION_DAYS", 365, integer(1, 36500)),
    historyRetentionDays: read("HISTORY_RETENTION_DAYS", 365, integer(0, 36500)),
    smtpUrl: read<string | undefined>("SMTP_URL", undefined, parseSmtpUrl),
    smtpFrom: read("SMTP_FROM", `cairn@${hostname()}`, parseMailbox),
    publicUrl: read<string | undefined>("PUBLIC_URL", undefined, parsePublicUrl),
    reportWebhookAllowPrivate: read("REPORT_WEBHOOK_ALLOW_PRIVATE", false, onOff),
    metrics: read<MetricsAccess>("METRICS", "off", (raw) =>
      METRICS_ACCESS.includes(raw.toLowerCase() as MetricsAccess)
        ? (raw.toLowerCase() as MetricsAccess)
        : new Invalid(`expected one of ${METRICS_ACCESS.join(", ")}`),
    ),
    tls: read<TlsMode>("TLS", "auto", (raw) =>
      TLS_MODES.includes(raw.toLowerCase() as TlsMode)
        ? (raw.toLowerCase() as TlsMode)
        : new Invalid(`expected one of ${TLS_MODES.join(", ")}`),
    ),
    tlsCert: env.TLS_CERT?.trim() ? path.resolve(cwd, env.TLS_CERT.trim()) : undefined,
    tlsKey: env.TLS_KEY?.trim() ? path.resolve(cwd, env.TLS_KEY.trim()) : undefined,
    role: read<CairnRole>("CAIRN_ROLE", "all", (raw) =>
      ROLES.includes(raw.toLowerCase() as CairnRole)
        ? (raw.toLowerCase() as CairnRole)
        : new Invalid("expected all (API and runs), api (API only, runs execute elsewhere) or worker (runs only)"),
    ),
    workerVms: read("WORKER_VMS", 4, integer(1, 64)),
  };
  if (env.DATABASE_URL) {
    if (/^postgres(ql)?:\/\//.test(env.DATABASE_URL)) config.databaseUrl = env.DATABASE_URL;
    else problems.push("DATABASE_URL: expected a postgresql:// connection string");
  }
  if (config.adminPassword !== undefined && config.adminPassword.length < MIN_PASSWORD_LENGTH) {
    problems.push(`ADMIN_PASSWORD: expected at least ${MIN_PASSWORD_LENGTH} characters`);
  }
  if (Boolean(config.tlsCert) !== Boolean(config.tlsKey)) {
    problems.push(
      `${config.tlsCert ? "TLS_KEY" : "TLS_CERT"}: expected with ${config.tlsCert ? "TLS_CERT" : "TLS_KEY"} (set both, or neither for a self-signed certificate)`,
    );
  }
  if (config.tls === "off" && config.tlsCert) problems.push("TLS=off: TLS_CERT and TLS_KEY are set; unset them to serve plain HTTP");
  if (problems.length > 0) {
    throw new CairnError(ErrorCode.InvalidConfig, `Invalid configuration:\n  ${problems.join("\n  ")}`);
  }
  return config;
}

function parseSecretKey(raw: string): Buffer | Invalid {
  const key = /^[0-9a-fA-F]{64}$/.test(raw) ? Buffer.from(raw, "hex") : Buffer.from(raw, "base64");
  return key.length === 32 ? key : new Invalid(`expected 32 bytes, as 64 hex digits or base64 (got ${key.length} bytes)`);
}

function parseSmtpUrl(raw: string): string | Invalid {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return new Invalid("expected smtp://user:password@host:port or smtps://user:password@host:port");
  }
  if (url.protocol !== "smtp:" && url.protocol !== "smtps:") return new Invalid("expected an smtp:// or smtps:// URL");
  if (!url.hostname) return new Invalid("expected a host: smtp://user:password@host:port");
  if (Boolean(url.username) !== Boolean(url.password)) return new Invalid("give both user and password (user:password@host), or neither");
  return raw;
}

/** An address, or `Name <address>`. */
function parseMailbox(raw: string): string | Invalid {
  const address = /<([^<>]+)>$/.exec(raw)?.[1] ?? raw;
  return /^[^\s@<>]+@[^\s@<>]+$/.test(address) && !/[\r\n]/.test(raw)
    ? raw
    : new Invalid("expected an email address such as cairn@example.net");
}

function parsePublicUrl(raw: string): string | Invalid {
  try {
    const url = new URL(raw);
    if (url.protocol === "http:" || url.protocol === "https:") return raw.replace(/\/+$/, "");
  } catch {
    // Reported below.
  }
  return new Invalid("expected the dashboard's http:// or https:// address, e.g. https://cairn.example.net");
}

/**
 * The address of links in reports: PUBLIC_URL, or this process's listen address (`listenUrl`); a wildcard listen address
 * (0.0.0.0, ::) is replaced by the machine's host name, which a reader of the report can reach, unlike 0.0.0.0.
 */
export function publicUrlOf(config: Pick<Config, "publicUrl" | "host"> & Partial<Pick<Config, "tls" | "tlsCert">>, port: number): string {
  if (config.publicUrl) return config.publicUrl;
  const host = config.host === "0.0.0.0" || config.host === "::" ? hostname() : config.host;
  return `${servesTls(config) ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Whether Cairn serves HTTPS: a certificate given, TLS=on, or TLS=auto on an address other than loopback. */
export function servesTls(config: Partial<Pick<Config, "tls" | "tlsCert" | "host">>): boolean {
  if (config.tlsCert) return true;
  if (config.tls === "on") return true;
  return config.tls === "auto" && !isLoopback(config.host ?? "127.0.0.1");
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
