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
  /** GFS (FULL, DELTA): besides the newest exportRetention, the oldest backup of each of the last this many periods; 0: off. */
  gfsDays: number;
  gfsWeeks: number;
  gfsMonths: number;
  gfsYears: number;
  weekStart: WeekStart;
  /** The local hour (0 to 23, in `timezone`) at which a GFS day starts. */
  dayStartHour: number;
}

export type WeekStart = "MONDAY" | "SUNDAY";

/** The most periods of each kind GFS may keep, as the API allows (MAX_GFS in server/services/job-input.ts). */
export const MAX_GFS = { gfsDays: 3660, gfsWeeks: 520, gfsMonths: 1200, gfsYears: 100 } as const;
export type GfsField = keyof typeof MAX_GFS;
export const GFS_FIELDS = Object.keys(MAX_GFS) as GfsField[];

export interface JobDraft {
  name: string;
  mode: BackupMode;
  enabled: boolean;
  selectionKind: "vms" | "smart";
  vmUuids: string[];
  smart: { poolIds: string[]; tagsAll: string[]; tagsAny: string[]; tagsNone: string[]; powerStates: string[] };
  remoteIds: string[];
  /** MIRROR: the remote whose restore points are copied to `remoteIds`. */
  sourceRemoteId: string | null;
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
  /** METADATA: back up Cairn's configuration besides the pools' databases. */
  includeConfiguration: boolean;
  schedules: ScheduleDraft[];
}

/**
 * A new schedule: 02:00 every day in the browser's time zone, keeping 7 backups or replicas and no snapshot; GFS off, with
 * the API's defaults for when it is turned on (weeks from Monday, days from midnight).
 */
export function newSchedule(timezone = browserTimeZone()): ScheduleDraft {
  return {
    name: "",
    cron: "0 2 * * *",
    timezone,
    enabled: true,
    exportRetention: 7,
    copyRetention: 7,
    snapshotRetention: 0,
    gfsDays: 0,
    gfsWeeks: 0,
    gfsMonths: 0,
    gfsYears: 0,
    weekStart: "MONDAY",
    dayStartHour: 0,
  };
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
    sourceRemoteId: null,
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
    includeConfiguration: true,
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
    sourceRemoteId: job.sourceRemote?.id ?? null,
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
    includeConfiguration: job.settings.includeConfiguration,
    schedules: job.schedules.map((s) => ({
      id: s.id,
      name: s.name ?? "",
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
    // A mirror picks VMs by uuid only (none: every VM its source holds).
    selection: rules.pools
      ? // A METADATA job selects pools only (none: every connected pool).
        { smart: { poolIds: [...draft.smart.poolIds], tagsAll: [], tagsAny: [], tagsNone: [], powerStates: [] } }
      : draft.selectionKind === "smart" && draft.mode !== "MIRROR"
        ? { smart: { ...draft.smart } }
        : { vmUuids: [...draft.vmUuids] },
    remoteIds: rules.remotes ? [...draft.remoteIds] : [],
    sourceRemoteId: draft.mode === "MIRROR" ? draft.sourceRemoteId : null,
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
      healthCheckSrUuid: rules.snapshots || draft.mode === "MIRROR" ? draft.healthCheckSrUuid || null : null,
      reportWhen: draft.reportWhen,
      reportEmails: draft.reportEmails.split(/[\s,;]+/).filter(Boolean),
      ...webhookInput(draft),
      verifyOlderThanDays: rules.verifyOlderThanDays ? number(draft.verifyOlderThanDays, 0) : 0,
      includeConfiguration: rules.pools ? draft.includeConfiguration : true,
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
      // GFS keeps backups on remotes only: other modes send it off, as the API asks.
      gfsDays: rules.retention === "exportRetention" ? number(s.gfsDays, 0) : 0,
      gfsWeeks: rules.retention === "exportRetention" ? number(s.gfsWeeks, 0) : 0,
      gfsMonths: rules.retention === "exportRetention" ? number(s.gfsMonths, 0) : 0,
      gfsYears: rules.retention === "exportRetention" ? number(s.gfsYears, 0) : 0,
      weekStart: s.weekStart,
      dayStartHour: number(s.dayStartHour, 0),
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

/** The parts of the job form: the essentials (always open) and the ones that fold. */
export type JobFormPart = "job" | "vms" | "targets" | "schedules" | "retention" | "advanced" | "reports";

const FIELDS_BY_PART: [JobFormPart, RegExp][] = [
  ["job", /^(name|mode)$/],
  ["vms", /^selection(\.vmUuids(\.\d+)?|\.smart\.(poolIds|powerStates|tagsAll|tagsAny|tagsNone)(\.\d+)?)?$/],
  ["targets", /^(remoteIds|srUuids|sourceRemoteId)(\.\d+)?$/],
  ["schedules", /^schedules(\.\d+\.(name|cron|timezone))?$/],
  [
    "retention",
    /^schedules\.\d+\.(exportRetention|copyRetention|snapshotRetention|gfsDays|gfsWeeks|gfsMonths|gfsYears|weekStart|dayStartHour)$/,
  ],
  ["reports", /^settings\.(reportWhen|reportWebhookUrl|reportEmails(\.\d+)?)$/],
  [
    "advanced",
    /^settings\.(compression|concurrency|timeoutSeconds|fullInterval|retries|verifyOlderThanDays|healthCheckSrUuid|quiesce|cbtNbd|nbdConnections|includeConfiguration)$/,
  ],
];

/**
 * The part of the form that shows the API's message about `field` (a path without `input.`, as field-errors.ts keys it);
 * null: no field of the form shows it, so the message goes to the top of the form instead.
 */
export function formPartOf(field: string): JobFormPart | null {
  return FIELDS_BY_PART.find(([, fields]) => fields.test(field))?.[0] ?? null;
}

const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
const numberOr = (value: unknown, fallback: number) => (typeof value === "number" && Number.isFinite(value) ? value : fallback);

/** What each schedule keeps, as the folded Retention line says it: "keep 7 backups, no snapshot". */
export function retentionSummary(draft: JobDraft): string {
  const rules = MODES[draft.mode];
  if (!rules.retention) return "a Verify job keeps nothing";
  if (draft.schedules.length === 0) return "no schedule yet: retention is set per schedule";
  const retention = rules.retention;
  const kept = (schedule: ScheduleDraft) => {
    const snapshots = numberOr(schedule.snapshotRetention, 0);
    const snapshotWords = snapshots === 0 ? "no snapshot" : count(snapshots, "snapshot", "snapshots");
    if (retention === "snapshotRetention") return `keep ${snapshotWords}`;
    const main = numberOr(schedule[retention], 0);
    const what = retention === "copyRetention" ? count(main, "replica", "replicas") : count(main, "backup", "backups");
    const gfs = retention === "exportRetention" ? gfsInWords(schedule) : "";
    return `keep ${what}${gfs ? ` + ${gfs}` : ""}, ${snapshotWords}`;
  };
  if (draft.schedules.length === 1) return kept(draft.schedules[0]!);
  return draft.schedules.map((schedule, index) => `${scheduleTitle(schedule, index)} ${kept(schedule)}`).join("; ");
}

/** A schedule's GFS in words, "1 per day for 7 days, per week for 4 weeks"; empty when it is off. */
export function gfsInWords(schedule: Pick<ScheduleDraft, GfsField>): string {
  const periods = (
    [
      ["gfsDays", "day", "days"],
      ["gfsWeeks", "week", "weeks"],
      ["gfsMonths", "month", "months"],
      ["gfsYears", "year", "years"],
    ] as const
  )
    .map(([field, one, many]) => ({ n: numberOr(schedule[field], 0), one, many }))
    .filter(({ n }) => n > 0)
    .map(({ n, one, many }) => `per ${one} for ${count(n, one, many)}`);
  return periods.length === 0 ? "" : `1 ${periods.join(", ")}`;
}

/** A GFS day's start hour as the form shows it: "00:00" … "23:00". */
export function hourInWords(hour: number): string {
  return `${String(hour).padStart(2, "0")}:00`;
}

/** "Schedule 2: Nightly", as the schedule editor's legend names it. */
export function scheduleTitle(schedule: ScheduleDraft, index: number): string {
  return `Schedule ${index + 1}${schedule.name.trim() ? `: ${schedule.name.trim()}` : ""}`;
}

function minutesInWords(minutes: number): string {
  if (minutes >= 60 && minutes % 60 === 0) return `${minutes / 60} h`;
  return `${minutes} min`;
}

/**
 * The settings of the Advanced part that apply to the mode, in words: "2 VMs at a time, no time limit, no retry, ...".
 * `srName` names the health check's SR.
 */
export function advancedSummary(draft: JobDraft, srName: (uuid: string) => string): string {
  const rules = MODES[draft.mode];
  const parts: string[] = [];
  if (rules.compression) parts.push(draft.compression === "NONE" ? "no compression" : `compression ${draft.compression.toLowerCase()}`);
  const concurrency = numberOr(draft.concurrency, 2);
  parts.push(
    rules.verifyOlderThanDays
      ? `${count(concurrency, "restore point", "restore points")} at a time`
      : `${count(concurrency, "VM", "VMs")} at a time`,
  );
  const timeout = draft.timeoutMinutes === null || (draft.timeoutMinutes as unknown) === "" ? null : numberOr(draft.timeoutMinutes, 0);
  parts.push(timeout === null ? "no time limit" : `stopped after ${minutesInWords(timeout)}`);
  const retries = numberOr(draft.retries, 0);
  parts.push(retries === 0 ? "no retry" : count(retries, "retry", "retries"));
  if (rules.fullInterval) {
    const every = numberOr(draft.fullInterval, 0);
    parts.push(
      every === 0 ? "full backup only when needed" : every === 1 ? "every backup a full one" : `a full backup every ${every} backups`,
    );
  }
  if (rules.verifyOlderThanDays) {
    const days = numberOr(draft.verifyOlderThanDays, 0);
    parts.push(
      days === 0 ? "every restore point verified at each run" : `skips restore points verified in the last ${count(days, "day", "days")}`,
    );
  }
  if (rules.snapshots) {
    parts.push(draft.healthCheckSrUuid ? `health check on ${srName(draft.healthCheckSrUuid)}` : "health check off");
    parts.push(draft.quiesce ? "quiesce on" : "quiesce off");
  }
  if (draft.mode === "DELTA") {
    parts.push(
      draft.cbtNbd ? `CBT + NBD with ${count(numberOr(draft.nbdConnections, 2), "connection", "connections")} per disk` : "CBT + NBD off",
    );
  }
  return parts.join(", ");
}

/** When reports go out and to whom, in words: "when a run fails, to ops@example.net, no webhook". */
export function reportsSummary(draft: JobDraft): string {
  const when = { ALWAYS: "after every run", FAILURE: "when a run fails", NEVER: "never sent" }[draft.reportWhen];
  if (draft.reportWhen === "NEVER") return when;
  const emails = draft.reportEmails.split(/[\s,;]+/).filter(Boolean);
  const to =
    emails.length === 0
      ? "no email address"
      : emails.length <= 2
        ? `to ${emails.join(" and ")}`
        : `to ${emails.slice(0, 2).join(", ")} and ${count(emails.length - 2, "more address", "more addresses")}`;
  return `${when}, ${to}, ${webhookWords(draft)}`;
}

/** The webhook in words, by its host only: the rest of a webhook URL often holds a token. */
function webhookWords(draft: JobDraft): string {
  const typed = draft.reportWebhookUrl.trim();
  if (typed) {
    try {
      return `webhook to ${new URL(typed).host}`;
    } catch {
      return "a new webhook";
    }
  }
  if (draft.reportWebhookCurrent && !draft.reportWebhookRemove) return `webhook ${draft.reportWebhookCurrent}`;
  return "no webhook";
}
