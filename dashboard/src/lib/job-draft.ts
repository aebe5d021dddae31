/**
 * The job form's editable state, and its conversions: from a job as the API gives it, and to the `JobInput` that
 * createJob and updateJob take (updateJob replaces every setting, so the form always sends the whole job).
 */
import type { BackupMode, JobDetail, JobInput } from "./api/operations-jobs.js";
import { MODES } from "./modes.js";

export interface ScheduleDraft {
  /** Kept on update, so the schedule keeps its history. */
  id?: string;
  name: string;
  cron: string;
  timezone: string;
  enabled: boolean;
  exportRetention: number;
  copyRetention: number;
  snapshotRetention: number;
}

export interface JobDraft {
  name: string;
  mode: BackupMode;
  enabled: boolean;
  selectionKind: "vms" | "smart";
  vmUuids: string[];
  smart: { poolIds: string[]; tagsAll: string[]; tagsAny: string[]; tagsNone: string[]; powerStates: string[] };
  remoteIds: string[];
  srUuids: string[];
  compression: "NONE" | "GZIP" | "ZSTD";
  concurrency: number;
  /** Minutes in the form (the API takes seconds); null: no limit. */
  timeoutMinutes: number | null;
  fullInterval: number;
  retries: number;
  quiesce: boolean;
  /** DELTA: read deltas through CBT + NBD after the first full. */
  cbtNbd: boolean;
  nbdConnections: number;
  healthCheckSrUuid: string | null;
  reportWhen: "ALWAYS" | "FAILURE" | "NEVER";
  /** Report recipients, as typed: separated by commas, spaces or new lines. */
  reportEmails: string;
  /** A new webhook URL, as typed; empty: keep the current one (the API never shows a stored URL whole: it may hold a token). */
  reportWebhookUrl: string;
  /** The stored webhook as the API shows it (`https://host/…`), null when there is none: shown, never sent back. */
  reportWebhookCurrent: string | null;
  /** Remove the stored webhook (when no new URL is typed). */
  reportWebhookRemove: boolean;
  /** VERIFY: only the restore points not verified within this many days (0: all). */
  verifyOlderThanDays: number;
  schedules: ScheduleDraft[];
}

/** A new schedule: 02:00 every day in the browser's time zone, keeping 7 backups or replicas and no snapshot. */
export function newSchedule(timezone = browserTimeZone()): ScheduleDraft {
  return { name: "", cron: "0 2 * * *", timezone, enabled: true, exportRetention: 7, copyRetention: 7, snapshotRetention: 0 };
}

export function browserTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** The server's defaults (DEFAULT_SETTINGS in server/services/job-input.ts) for a new DELTA job. */
export function emptyDraft(): JobDraft {
  return {
    name: "",
    mode: "DELTA",
    enabled: true,
    selectionKind: "vms",
    vmUuids: [],
    smart: { poolIds: [], tagsAll: [], tagsAny: [], tagsNone: [], powerStates: [] },
    remoteIds: [],
    srUuids: [],
    compression: "NONE",
    concurrency: 2,
    timeoutMinutes: null,
    fullInterval: 0,
    retries: 0,
    quiesce: false,
    cbtNbd: false,
    nbdConnections: 2,
    healthCheckSrUuid: null,
    reportWhen: "FAILURE",
    reportEmails: "",
    reportWebhookUrl: "",
    reportWebhookCurrent: null,
    reportWebhookRemove: false,
    verifyOlderThanDays: 0,
    schedules: [newSchedule()],
  };
}

export function draftFromJob(job: JobDetail): JobDraft {
  const smart = job.selection.smart;
  return {
    name: job.name,
    mode: job.mode,
    enabled: job.enabled,
    selectionKind: smart ? "smart" : "vms",
    vmUuids: [...job.selection.vmUuids],
    smart: {
      poolIds: [...(smart?.poolIds ?? [])],
      tagsAll: [...(smart?.tagsAll ?? [])],
      tagsAny: [...(smart?.tagsAny ?? [])],
      tagsNone: [...(smart?.tagsNone ?? [])],
      powerStates: [...(smart?.powerStates ?? [])],
    },
    remoteIds: job.remotes.map((remote) => remote.id),
    srUuids: [...job.srUuids],
    compression: job.settings.compression,
    concurrency: job.settings.concurrency,
    timeoutMinutes: job.settings.timeoutSeconds === null ? null : job.settings.timeoutSeconds / 60,
    fullInterval: job.settings.fullInterval,
    retries: job.settings.retries,
    quiesce: job.settings.quiesce,
    cbtNbd: job.settings.cbtNbd,
    nbdConnections: job.settings.nbdConnections,
    healthCheckSrUuid: job.settings.healthCheckSrUuid,
    reportWhen: job.settings.reportWhen,
    reportEmails: job.settings.reportEmails.join(", "),
    reportWebhookUrl: "",
    reportWebhookCurrent: job.settings.reportWebhookUrl ?? null,
    reportWebhookRemove: false,
    verifyOlderThanDays: job.settings.verifyOlderThanDays,
    schedules: job.schedules.map((s) => ({
      id: s.id,
      name: s.name ?? "",
      cron: s.cron,
      timezone: s.timezone,
      enabled: s.enabled,
      exportRetention: s.exportRetention,
      copyRetention: s.copyRetention,
      snapshotRetention: s.snapshotRetention,
    })),
  };
}

/**
 * The input for createJob/updateJob. Targets and settings the mode does not use are left out (the server refuses a
 * remote on a replication job, or compression on a delta job), so switching modes back and forth loses nothing in
 * the form but sends only what applies.
 */
export function draftToInput(draft: JobDraft): JobInput {
  const rules = MODES[draft.mode];
  const number = (value: unknown, fallback: number) => (typeof value === "number" && Number.isFinite(value) ? value : fallback);
  return {
    name: draft.name.trim(),
    mode: draft.mode,
    enabled: draft.enabled,
    selection: draft.selectionKind === "smart" ? { smart: { ...draft.smart } } : { vmUuids: [...draft.vmUuids] },
    remoteIds: rules.remotes ? [...draft.remoteIds] : [],
    srUuids: rules.srs ? [...draft.srUuids] : [],
    settings: {
      compression: rules.compression ? draft.compression : "NONE",
      concurrency: number(draft.concurrency, 2),
      timeoutSeconds:
        draft.timeoutMinutes === null || (draft.timeoutMinutes as unknown) === "" ? null : Math.round(number(draft.timeoutMinutes, 0) * 60),
      fullInterval: rules.fullInterval ? number(draft.fullInterval, 0) : 0,
      retries: number(draft.retries, 0),
      quiesce: rules.snapshots ? draft.quiesce : false,
      cbtNbd: draft.mode === "DELTA" ? draft.cbtNbd : false,
      nbdConnections: number(draft.nbdConnections, 2),
      healthCheckSrUuid: rules.snapshots ? draft.healthCheckSrUuid || null : null,
      reportWhen: draft.reportWhen,
      reportEmails: draft.reportEmails.split(/[\s,;]+/).filter(Boolean),
      ...webhookInput(draft),
      verifyOlderThanDays: rules.verifyOlderThanDays ? number(draft.verifyOlderThanDays, 0) : 0,
    },
    schedules: draft.schedules.map((s) => ({
      ...(s.id ? { id: s.id } : {}),
      name: s.name.trim() || null,
      cron: s.cron.trim(),
      timezone: s.timezone.trim() || "UTC",
      enabled: s.enabled,
      exportRetention: rules.retention === "exportRetention" ? number(s.exportRetention, 0) : 0,
      copyRetention: rules.retention === "copyRetention" ? number(s.copyRetention, 0) : 0,
      snapshotRetention: rules.snapshots ? number(s.snapshotRetention, 0) : 0,
    })),
  };
}

/**
 * The webhook part of the input: a typed URL replaces the stored one; else the field is left out, which keeps the stored URL
 * (the form only knows its redacted form), unless the user asked to remove it (null).
 */
function webhookInput(draft: JobDraft): { reportWebhookUrl?: string | null } {
  const typed = draft.reportWebhookUrl.trim();
  if (typed) return { reportWebhookUrl: typed };
  if (draft.reportWebhookCurrent && !draft.reportWebhookRemove) return {};
  return { reportWebhookUrl: null };
}
