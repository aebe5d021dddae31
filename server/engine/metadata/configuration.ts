/**
 * Cairn's own configuration as a metadata backup holds it (`configuration.json`): jobs with their schedules and settings,
 * remotes, pools, users with their password hashes and roles. Secrets (remote passwords, encryption keys, pool passwords,
 * report webhook URLs, which carry tokens) are written only when `includeSecrets` (the target remote is encrypted); the
 * restore then tells which objects need theirs entered again. Password hashes are not secrets in that sense (scrypt, the
 * way Cairn itself stores them), so users always come back able to sign in.
 */
import type { Db } from "../../db/prisma.js";
import type { SecretBox } from "../../security/secret-box.js";

export const CONFIGURATION_FORMAT = "cairn-configuration";

export interface ConfigurationPool {
  id: string;
  name: string;
  url: string;
  username: string;
  /** Present only in a backup with secrets. */
  password?: string;
  allowUnauthorized: boolean;
  tlsFingerprint: string | null;
}

export interface ConfigurationRemote {
  id: string;
  name: string;
  kind: string;
  location: string;
  options: unknown;
  username: string | null;
  enabled: boolean;
  /** Whether the remote had a password / an encryption key (whether or not it is in this backup). */
  hasPassword: boolean;
  encrypted: boolean;
  password?: string;
  encryptionKey?: string;
}

export interface ConfigurationSchedule {
  id: string;
  name: string | null;
  cron: string;
  timezone: string;
  enabled: boolean;
  exportRetention: number;
  copyRetention: number;
  snapshotRetention: number;
  gfsDays: number;
  gfsWeeks: number;
  gfsMonths: number;
  gfsYears: number;
  weekStart: string;
  dayStartHour: number;
}

export interface ConfigurationJob {
  id: string;
  name: string;
  mode: string;
  selection: unknown;
  srUuids: string[];
  /** Without `reportWebhookUrl` in a backup without secrets. */
  settings: Record<string, unknown>;
  enabled: boolean;
  remoteIds: string[];
  /** Every column of the job row this version does not name above (another helper's mode may add some): kept as is. */
  extra: Record<string, unknown>;
  /** Whether a report webhook URL was set (whether or not it is in this backup). */
  hadWebhook: boolean;
  schedules: ConfigurationSchedule[];
}

export interface ConfigurationUser {
  id: string;
  username: string;
  passwordHash: string;
  role: string;
  disabled: boolean;
}

export interface Configuration {
  format: typeof CONFIGURATION_FORMAT;
  version: 1;
  createdAt: string;
  secretsIncluded: boolean;
  pools: ConfigurationPool[];
  remotes: ConfigurationRemote[];
  jobs: ConfigurationJob[];
  users: ConfigurationUser[];
}

const JOB_COLUMNS = new Set(["id", "name", "mode", "selection", "srUuids", "settings", "enabled", "createdAt", "updatedAt"]);

export async function exportConfiguration(db: Db, secrets: SecretBox, includeSecrets: boolean): Promise<Configuration> {
  const [pools, remotes, jobs, users] = await Promise.all([
    db.pool.findMany({ orderBy: { name: "asc" } }),
    db.remote.findMany({ orderBy: { name: "asc" } }),
    db.job.findMany({ orderBy: { name: "asc" }, include: { remotes: true, schedules: { orderBy: { createdAt: "asc" } } } }),
    db.user.findMany({ orderBy: { username: "asc" } }),
  ]);
  return {
    format: CONFIGURATION_FORMAT,
    version: 1,
    createdAt: new Date().toISOString(),
    secretsIncluded: includeSecrets,
    pools: pools.map((pool) => ({
      id: pool.id,
      name: pool.name,
      url: pool.url,
      username: pool.username,
      ...(includeSecrets ? { password: secrets.open(pool.passwordSealed) } : {}),
      allowUnauthorized: pool.allowUnauthorized,
      tlsFingerprint: pool.tlsFingerprint,
    })),
    remotes: remotes.map((remote) => ({
      id: remote.id,
      name: remote.name,
      kind: remote.kind,
      location: remote.location,
      options: remote.options,
      username: remote.username,
      enabled: remote.enabled,
      hasPassword: remote.passwordSealed !== null,
      encrypted: remote.encryptionKeySealed !== null,
      ...(includeSecrets && remote.passwordSealed ? { password: secrets.open(remote.passwordSealed) } : {}),
      ...(includeSecrets && remote.encryptionKeySealed ? { encryptionKey: secrets.open(remote.encryptionKeySealed) } : {}),
    })),
    jobs: jobs.map((job) => {
      const { remotes: links, schedules, ...row } = job;
      const settings = { ...((job.settings ?? {}) as Record<string, unknown>) };
      const hadWebhook = typeof settings.reportWebhookUrl === "string" && settings.reportWebhookUrl !== "";
      if (!includeSecrets) delete settings.reportWebhookUrl;
      const extra = Object.fromEntries(Object.entries(row).filter(([key]) => !JOB_COLUMNS.has(key)));
      return {
        id: job.id,
        name: job.name,
        mode: job.mode,
        selection: job.selection,
        srUuids: job.srUuids,
        settings,
        enabled: job.enabled,
        remoteIds: links.map((link) => link.remoteId),
        extra,
        hadWebhook,
        schedules: schedules.map((s) => ({
          id: s.id,
          name: s.name,
          cron: s.cron,
          timezone: s.timezone,
          enabled: s.enabled,
          exportRetention: s.exportRetention,
          copyRetention: s.copyRetention,
          snapshotRetention: s.snapshotRetention,
          gfsDays: s.gfsDays,
          gfsWeeks: s.gfsWeeks,
          gfsMonths: s.gfsMonths,
          gfsYears: s.gfsYears,
          weekStart: s.weekStart,
          dayStartHour: s.dayStartHour,
        })),
      };
    }),
    users: users.map((user) => ({
      id: user.id,
      username: user.username,
      passwordHash: user.passwordHash,
      role: user.role,
      disabled: user.disabledAt !== null,
    })),
  };
}

/** Parses a `configuration.json`. @throws Error saying what is wrong with it */
export function parseConfiguration(text: string): Configuration {
  let value: Partial<Configuration>;
  try {
    value = JSON.parse(text) as Partial<Configuration>;
  } catch {
    throw new Error("it is not JSON");
  }
  if (value.format !== CONFIGURATION_FORMAT || value.version !== 1) throw new Error("it is not a Cairn configuration of version 1");
  for (const key of ["pools", "remotes", "jobs", "users"] as const) {
    if (!Array.isArray(value[key])) throw new Error(`its ${key} are missing`);
  }
  return value as Configuration;
}
