/**
 * What a job is set to do, as the engine, the reports and the API read it: the VM selection and the job's settings with
 * their defaults. Validation of what a client sends lives in server/services/job-input.ts.
 */
/** The database's Compression enum, spelled here so that the domain imports nothing. */
export type Compression = "NONE" | "GZIP" | "ZSTD";

export type ReportWhen = "ALWAYS" | "FAILURE" | "NEVER";
export const POWER_STATES = ["Running", "Halted", "Paused", "Suspended"] as const;

export interface SmartSelection {
  poolIds: string[];
  tagsAll: string[];
  tagsAny: string[];
  tagsNone: string[];
  powerStates: string[];
}

export interface Selection {
  vmUuids: string[];
  smart: SmartSelection | null;
}

export interface JobSettings {
  compression: Compression;
  concurrency: number;
  timeoutSeconds: number | null;
  fullInterval: number;
  retries: number;
  quiesce: boolean;
  healthCheckSrUuid: string | null;
  reportWhen: ReportWhen;
  /** Addresses the run report is mailed to (at most MAX_REPORT_EMAILS; empty: no email). */
  reportEmails: string[];
  /** http(s) URL the run report is POSTed to as JSON (null: no webhook). */
  reportWebhookUrl: string | null;
  /** VERIFY: verify only the restore points not verified within this many days (0: every restore point, every run). */
  verifyOlderThanDays: number;
  /**
   * DELTA: after the first full, read each delta through Changed Block Tracking + NBD (only the changed blocks leave the
   * pool) and keep no snapshot data on the SR between runs; falls back to the export path with a warning.
   */
  cbtNbd: boolean;
  /** DELTA with cbtNbd: NBD connections per disk. */
  nbdConnections: number;
  /** METADATA: back up Cairn's own configuration (jobs, schedules, remotes, pools, users) besides the pools' databases. */
  includeConfiguration: boolean;
}

/** Most NBD connections a job may open per disk. */
export const MAX_NBD_CONNECTIONS = 16;

/** Most addresses a job's report goes to. */
export const MAX_REPORT_EMAILS = 20;

export const DEFAULT_SETTINGS: Readonly<JobSettings> = Object.freeze({
  compression: "NONE",
  concurrency: 2,
  timeoutSeconds: null,
  fullInterval: 0,
  retries: 0,
  quiesce: false,
  healthCheckSrUuid: null,
  reportWhen: "FAILURE",
  reportEmails: [],
  reportWebhookUrl: null,
  verifyOlderThanDays: 0,
  cbtNbd: false,
  nbdConnections: 2,
  includeConfiguration: true,
});

/** A job's stored settings with the defaults of settings added since it was saved (a job saved before reports has none). */
export function effectiveSettings(stored: unknown): JobSettings {
  return { ...DEFAULT_SETTINGS, ...stripNulls((stored ?? {}) as Partial<JobSettings>) } as JobSettings;
}

/** The fields of `value` that hold a value (a stored or sent null means "the default"). */
export function stripNulls<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null && v !== undefined)) as Partial<T>;
}
