/**
 * The shape of a job as the API gives it, and its validation: every bad value is an InputError naming its field
 * (`input.schedules.1.cron`), so a form can show it at the right place.
 */
import type { BackupMode, Compression, WeekStart } from "../db/generated/enums.js";
import { CairnError, ErrorCode, InputError } from "../errors.js";
import { isUuid } from "../domain/ids.js";
import {
  DEFAULT_SETTINGS,
  MAX_NBD_CONNECTIONS,
  MAX_REPORT_EMAILS,
  POWER_STATES,
  stripNulls,
  type JobSettings,
  type ReportWhen,
  type Selection,
  type SmartSelection,
} from "../domain/job-settings.js";
import { cronProblem, isTimeZone, MAX_SCHEDULES_PER_JOB } from "../domain/schedule.js";
import { ALLOW_PRIVATE_HINT, redactedWebhookUrl, refusedWebhookHost } from "../domain/webhook-target.js";
import { integerInRange, optionalText, requiredText } from "./input-checks.js";

export interface ScheduleInput {
  id?: string | null;
  name?: string | null;
  cron: string;
  timezone?: string | null;
  enabled?: boolean | null;
  exportRetention?: number | null;
  copyRetention?: number | null;
  snapshotRetention?: number | null;
  gfsDays?: number | null;
  gfsWeeks?: number | null;
  gfsMonths?: number | null;
  gfsYears?: number | null;
  weekStart?: WeekStart | null;
  dayStartHour?: number | null;
}

export interface JobInput {
  name: string;
  mode: BackupMode;
  selection: { vmUuids?: string[] | null; smart?: Partial<SmartSelection> | null };
  remoteIds?: string[] | null;
  /** MIRROR: the remote whose restore points are copied to `remoteIds`. */
  sourceRemoteId?: string | null;
  srUuids?: string[] | null;
  settings?: { [K in keyof JobSettings]?: JobSettings[K] | null } | null;
  schedules?: ScheduleInput[] | null;
  enabled?: boolean | null;
}

export interface CheckedSchedule {
  id?: string;
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
  weekStart: WeekStart;
  dayStartHour: number;
}

export interface CheckedJob {
  name: string;
  mode: BackupMode;
  selection: Selection;
  remoteIds: string[];
  sourceRemoteId: string | null;
  srUuids: string[];
  settings: JobSettings;
  schedules: CheckedSchedule[];
  enabled: boolean;
}

const MODES: BackupMode[] = [
  "FULL",
  "DELTA",
  "ROLLING_SNAPSHOT",
  "DISASTER_RECOVERY",
  "CONTINUOUS_REPLICATION",
  "VERIFY",
  "MIRROR",
  "METADATA",
];
const COMPRESSIONS: Compression[] = ["NONE", "GZIP", "ZSTD"];
const REPORT_WHEN: ReportWhen[] = ["ALWAYS", "FAILURE", "NEVER"];
const MAX_RETENTION = 1000;
const WEEK_STARTS: WeekStart[] = ["MONDAY", "SUNDAY"];

/** Most periods GFS retention may keep, per kind: ten years of days, of weeks and of months, and a century of years. */
export const MAX_GFS = { gfsDays: 3660, gfsWeeks: 520, gfsMonths: 1200, gfsYears: 100 } as const;
const GFS_FIELDS = Object.keys(MAX_GFS) as (keyof typeof MAX_GFS)[];

/** Longest verifyOlderThanDays: ten years. */
const MAX_VERIFY_OLDER_THAN_DAYS = 3650;

/** Which targets and which retention each mode needs (VERIFY keeps nothing: it reads what backup jobs wrote). */
const MODE_RULES: Record<BackupMode, { remotes: boolean; srs: boolean; retention: keyof CheckedSchedule | null }> = {
  FULL: { remotes: true, srs: false, retention: "exportRetention" },
  DELTA: { remotes: true, srs: false, retention: "exportRetention" },
  ROLLING_SNAPSHOT: { remotes: false, srs: false, retention: "snapshotRetention" },
  DISASTER_RECOVERY: { remotes: false, srs: true, retention: "copyRetention" },
  CONTINUOUS_REPLICATION: { remotes: false, srs: true, retention: "copyRetention" },
  VERIFY: { remotes: true, srs: false, retention: null },
  MIRROR: { remotes: true, srs: false, retention: "exportRetention" },
  METADATA: { remotes: true, srs: false, retention: "exportRetention" },
};

export interface JobInputOptions {
  /** REPORT_WEBHOOK_ALLOW_PRIVATE: a webhook may target this machine and the link-local network. @default false */
  allowPrivateWebhooks?: boolean;
  /** The job's stored webhook URL (updates): kept when the input leaves the field out, or sends back its redacted form. */
  storedWebhookUrl?: string | null;
  /** When the schedules' next fire times are computed from (tests). @default now */
  now?: Date;
}

/**
 * Checks the shape and values of a job input (existence of referenced objects is the service's job). Every refused field is
 * reported at once, so that a form shows all its errors after one save: one problem throws its InputError; several throw one
 * BAD_USER_INPUT whose details.fields lists each (field, message), extensions.fields to clients.
 */
export function checkJobInput(input: JobInput, options: JobInputOptions = {}): CheckedJob {
  if (!input || typeof input !== "object") throw new InputError("input", "is required");
  const problems: InputError[] = [];
  const attempt = <T>(check: () => T, fallback: T): T => {
    try {
      return check();
    } catch (error) {
      if (!(error instanceof InputError)) throw error;
      problems.push(error);
      return fallback;
    }
  };
  const name = attempt(() => requiredText(input.name, "input.name", 100), "");
  // Every other rule depends on the mode: without a known one, only the name can be checked with it.
  if (!MODES.includes(input.mode)) {
    problems.push(new InputError("input.mode", `must be one of ${MODES.join(", ")}`));
    throw inputProblems(problems);
  }
  const rules = MODE_RULES[input.mode];
  const remoteIds = attempt(() => {
    const ids = uniqueIds(input.remoteIds ?? [], "input.remoteIds", isUuid, "a remote id");
    if (input.mode === "VERIFY" && ids.length === 0)
      throw new InputError("input.remoteIds", "a VERIFY job needs at least one remote: the remotes whose restore points it verifies");
    if (rules.remotes && ids.length === 0) throw new InputError("input.remoteIds", `a ${input.mode} job needs at least one remote`);
    if (!rules.remotes && ids.length > 0)
      throw new InputError("input.remoteIds", `a ${input.mode} job writes to no remote: leave this empty`);
    return ids;
  }, [] as string[]);
  const sourceRemoteId = attempt(() => checkSourceRemote(input, remoteIds), null);
  const srUuids = attempt(() => {
    const uuids = uniqueIds(input.srUuids ?? [], "input.srUuids", isUuid, "an SR uuid");
    if (input.mode === "VERIFY" && uuids.length > 0)
      throw new InputError("input.srUuids", "a VERIFY job reads backups on remotes and touches no SR: leave this empty");
    if (rules.srs && uuids.length === 0) throw new InputError("input.srUuids", `a ${input.mode} job needs at least one target SR`);
    if (!rules.srs && uuids.length > 0) throw new InputError("input.srUuids", `a ${input.mode} job copies to no SR: leave this empty`);
    return uuids;
  }, [] as string[]);

  const listed = attempt(() => {
    if (input.schedules != null && !Array.isArray(input.schedules)) throw new InputError("input.schedules", "must be a list");
    if ((input.schedules?.length ?? 0) > MAX_SCHEDULES_PER_JOB) {
      throw new InputError(
        "input.schedules",
        `a job has at most ${MAX_SCHEDULES_PER_JOB} schedules (MAX_SCHEDULES_PER_JOB), got ${input.schedules?.length}: merge schedules that fire together`,
      );
    }
    return true;
  }, false);
  const retention = rules.retention;
  const schedules = (listed ? (input.schedules ?? []) : []).flatMap((s, i) => {
    const schedule = attempt(() => checkSchedule(s, `input.schedules.${i}`, options.now), null);
    if (schedule && retention && schedule[retention] === 0) {
      problems.push(
        new InputError(
          `input.schedules.${i}.${retention}`,
          `a ${input.mode} job keeps its backups with ${retention}: it must be at least 1`,
        ),
      );
    }
    if (schedule && (retention !== "exportRetention" || input.mode === "METADATA")) {
      // GFS keeps backups on remotes: snapshots and replicas have only the newest N.
      for (const gfs of GFS_FIELDS) {
        if (schedule[gfs] !== 0)
          problems.push(
            new InputError(
              `input.schedules.${i}.${gfs}`,
              `GFS retention applies to FULL, DELTA and MIRROR jobs only, not to ${input.mode}: leave it 0`,
            ),
          );
      }
    }
    return schedule ? [schedule] : [];
  });
  const selection = attempt(
    () => (input.mode === "MIRROR" ? checkMirrorSelection(input.selection) : checkSelection(input.selection)),
    null,
  );
  if (selection && input.mode === "METADATA") attempt(() => checkMetadataSelection(selection), null);
  const settings = attempt(() => checkSettings(input.settings ?? {}, input.mode, options), null);
  if (problems.length > 0 || !selection || !settings) throw inputProblems(problems);
  return {
    name,
    mode: input.mode,
    selection,
    remoteIds,
    sourceRemoteId,
    srUuids,
    settings,
    schedules,
    enabled: input.enabled ?? true,
  };
}

/** One refused field as it is (its InputError), or several as one BAD_USER_INPUT listing each in details.fields. */
function inputProblems(problems: InputError[]): CairnError {
  if (problems.length === 1) return problems[0];
  return new CairnError(ErrorCode.BadInput, problems.map((problem) => `${problem.message}.`).join(" "), {
    field: problems[0].field,
    fields: problems.map((problem) => ({ field: problem.field, message: problem.message })),
  });
}

/** A METADATA job selects pools (`smart.poolIds`, empty: every connected pool), not VMs. */
function checkMetadataSelection(selection: Selection): void {
  const smart = selection.smart;
  const byVm = !smart || smart.tagsAll.length + smart.tagsAny.length + smart.tagsNone.length + smart.powerStates.length > 0;
  if (selection.vmUuids.length > 0 || byVm)
    throw new InputError(
      "input.selection",
      "a METADATA job backs up pools, not VMs: give only smart.poolIds (the pools whose metadata it backs up; empty: every connected pool)",
    );
}

/** A MIRROR job reads one remote (its source) and writes the others: the source is required and is not one of its targets. */
function checkSourceRemote(input: JobInput, remoteIds: string[]): string | null {
  const id = input.sourceRemoteId ?? null;
  if (input.mode !== "MIRROR") {
    if (id !== null && id !== "")
      throw new InputError("input.sourceRemoteId", `only a MIRROR job reads a source remote, not a ${input.mode} job: leave it empty`);
    return null;
  }
  if (id === null || id === "")
    throw new InputError("input.sourceRemoteId", "a MIRROR job needs a source remote: the remote whose restore points it copies");
  if (typeof id !== "string" || !isUuid(id))
    throw new InputError("input.sourceRemoteId", `must be a remote id (got ${JSON.stringify(id)})`);
  if (remoteIds.includes(id))
    throw new InputError(
      "input.remoteIds",
      "the source remote is also a target: a mirror copies to other remotes, so leave the source out of the targets",
    );
  return id;
}

/** A MIRROR job picks VMs by uuid (those whose backups the source holds); an empty list mirrors every VM of the source. */
function checkMirrorSelection(selection: JobInput["selection"]): Selection {
  if (selection?.smart)
    throw new InputError(
      "input.selection.smart",
      "a MIRROR job copies backups, not live VMs, so a smart selection (pools, tags, power states) cannot apply: list VM uuids, or none to mirror every VM on the source",
    );
  return { vmUuids: uniqueIds(selection?.vmUuids ?? [], "input.selection.vmUuids", isVmUuid, "a VM uuid"), smart: null };
}

function checkSelection(selection: JobInput["selection"]): Selection {
  if (!selection || typeof selection !== "object")
    throw new InputError("input.selection", "is required: choose at least one VM, or a smart selection");
  const vmUuids = uniqueIds(selection.vmUuids ?? [], "input.selection.vmUuids", isVmUuid, "a VM uuid");
  const smartInput = selection.smart;
  if (vmUuids.length > 0 && smartInput) throw new InputError("input.selection", "give either vmUuids or smart, not both");
  if (vmUuids.length === 0 && !smartInput)
    throw new InputError("input.selection", "choose at least one VM, or a smart selection (by pool, tag or power state)");
  if (!smartInput) return { vmUuids, smart: null };
  const field = "input.selection.smart";
  const smart: SmartSelection = {
    poolIds: uniqueIds(smartInput.poolIds ?? [], `${field}.poolIds`, isUuid, "a pool id"),
    tagsAll: tags(smartInput.tagsAll, `${field}.tagsAll`),
    tagsAny: tags(smartInput.tagsAny, `${field}.tagsAny`),
    tagsNone: tags(smartInput.tagsNone, `${field}.tagsNone`),
    powerStates: uniqueIds(
      smartInput.powerStates ?? [],
      `${field}.powerStates`,
      (s) => (POWER_STATES as readonly string[]).includes(s),
      `one of ${POWER_STATES.join(", ")}`,
    ),
  };
  return { vmUuids: [], smart };
}

function checkSettings(settings: NonNullable<JobInput["settings"]>, mode: BackupMode, options: JobInputOptions): JobSettings {
  const merged = { ...DEFAULT_SETTINGS, ...stripNulls(settings) } as JobSettings;
  const field = "input.settings";
  if (!COMPRESSIONS.includes(merged.compression)) throw new InputError(`${field}.compression`, `must be one of ${COMPRESSIONS.join(", ")}`);
  if (!REPORT_WHEN.includes(merged.reportWhen)) throw new InputError(`${field}.reportWhen`, `must be one of ${REPORT_WHEN.join(", ")}`);
  if (merged.compression !== "NONE" && mode !== "FULL" && mode !== "DISASTER_RECOVERY") {
    throw new InputError(`${field}.compression`, `applies to XVA exports only (FULL, DISASTER_RECOVERY), not to ${mode}`);
  }
  if (mode === "VERIFY" && merged.healthCheckSrUuid !== null) {
    throw new InputError(
      `${field}.healthCheckSrUuid`,
      "a VERIFY job restores nothing onto a pool: leave this empty (checkRestorePoint boots a restore point)",
    );
  }
  const verifyOlderThanDays = integerInRange(merged.verifyOlderThanDays, `${field}.verifyOlderThanDays`, 0, MAX_VERIFY_OLDER_THAN_DAYS);
  if (mode !== "VERIFY" && verifyOlderThanDays !== 0)
    throw new InputError(`${field}.verifyOlderThanDays`, `applies to VERIFY jobs only, not to ${mode}: leave it 0`);
  const cbtNbd = typeof merged.cbtNbd === "boolean" ? merged.cbtNbd : fail(`${field}.cbtNbd`, "must be true or false");
  if (cbtNbd && mode !== "DELTA") throw new InputError(`${field}.cbtNbd`, `applies to DELTA jobs only, not to ${mode}: leave it false`);
  return {
    compression: merged.compression,
    concurrency: integerInRange(merged.concurrency, `${field}.concurrency`, 1, 32),
    timeoutSeconds: merged.timeoutSeconds === null ? null : integerInRange(merged.timeoutSeconds, `${field}.timeoutSeconds`, 60, 7 * 86400),
    fullInterval: integerInRange(merged.fullInterval, `${field}.fullInterval`, 0, 1000),
    retries: integerInRange(merged.retries, `${field}.retries`, 0, 10),
    quiesce: typeof merged.quiesce === "boolean" ? merged.quiesce : fail(`${field}.quiesce`, "must be true or false"),
    healthCheckSrUuid:
      merged.healthCheckSrUuid === null
        ? null
        : isUuid(merged.healthCheckSrUuid)
          ? merged.healthCheckSrUuid
          : fail(`${field}.healthCheckSrUuid`, "must be an SR uuid"),
    reportWhen: merged.reportWhen,
    reportEmails: reportEmails(merged.reportEmails, `${field}.reportEmails`),
    reportWebhookUrl: webhookUrl(settings, `${field}.reportWebhookUrl`, options),
    verifyOlderThanDays,
    cbtNbd,
    nbdConnections: integerInRange(merged.nbdConnections, `${field}.nbdConnections`, 1, MAX_NBD_CONNECTIONS),
    includeConfiguration:
      typeof merged.includeConfiguration === "boolean"
        ? merged.includeConfiguration
        : fail(`${field}.includeConfiguration`, "must be true or false"),
  };
}

/** A plain address (local@domain, no display name): what the report is mailed to. */
const EMAIL =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

function reportEmails(values: unknown, field: string): string[] {
  if (!Array.isArray(values)) throw new InputError(field, "must be a list of email addresses");
  const addresses = values.map((value, i) => {
    const address = typeof value === "string" ? value.trim() : value;
    if (typeof address !== "string" || address.length > 254 || !EMAIL.test(address)) {
      throw new InputError(`${field}.${i}`, `must be an email address such as ops@example.net (got ${JSON.stringify(value)})`);
    }
    return address;
  });
  const unique = [...new Map(addresses.map((a) => [a.toLowerCase(), a])).values()];
  if (unique.length > MAX_REPORT_EMAILS) throw new InputError(field, `at most ${MAX_REPORT_EMAILS} addresses (got ${unique.length})`);
  return unique;
}

/**
 * The webhook URL to store. It is write-only (readers see `https://host/…`, its path and query usually hold a token), so an
 * update that leaves it out keeps the stored one, as does one sending back the redacted form; null or "" removes it.
 */
function webhookUrl(settings: NonNullable<JobInput["settings"]>, field: string, options: JobInputOptions): string | null {
  const value = settings.reportWebhookUrl;
  const stored = options.storedWebhookUrl ?? null;
  if (value === undefined) return stored;
  if (value === null || value === "") return null;
  if (stored && value === redactedWebhookUrl(stored)) return stored;
  const text = requiredText(value, field, 2000);
  if (text.includes("…")) {
    throw new InputError(
      field,
      "is the hidden form of a webhook URL (the API never shows its path): give the whole URL, or leave the field out to keep the stored one",
    );
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InputError(field, `must be a URL such as https://hooks.example.net/cairn (got ${JSON.stringify(text)})`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new InputError(field, "must start with http:// or https://");
  const refused = options.allowPrivateWebhooks ? null : refusedWebhookHost(url);
  if (refused) throw new InputError(field, `${refused}: a report webhook may not reach it; ${ALLOW_PRIVATE_HINT}`);
  return text;
}

export function checkSchedule(input: ScheduleInput, field: string, now = new Date()): CheckedSchedule {
  if (!input || typeof input !== "object") throw new InputError(field, "is required");
  const cron = requiredText(input.cron, `${field}.cron`, 100);
  const timezone = input.timezone?.trim() || "UTC";
  if (!isTimeZone(timezone))
    throw new InputError(`${field}.timezone`, `${JSON.stringify(timezone)} is not an IANA time zone (e.g. Europe/Paris, UTC)`);
  const problem = cronProblem(cron, timezone, now);
  if (problem) throw new InputError(`${field}.cron`, problem);
  return {
    ...(input.id ? { id: input.id } : {}),
    name: optionalText(input.name, `${field}.name`, 100) ?? null,
    cron,
    timezone,
    enabled: input.enabled ?? true,
    exportRetention: integerInRange(input.exportRetention ?? 0, `${field}.exportRetention`, 0, MAX_RETENTION),
    copyRetention: integerInRange(input.copyRetention ?? 0, `${field}.copyRetention`, 0, MAX_RETENTION),
    snapshotRetention: integerInRange(input.snapshotRetention ?? 0, `${field}.snapshotRetention`, 0, MAX_RETENTION),
    gfsDays: integerInRange(input.gfsDays ?? 0, `${field}.gfsDays`, 0, MAX_GFS.gfsDays),
    gfsWeeks: integerInRange(input.gfsWeeks ?? 0, `${field}.gfsWeeks`, 0, MAX_GFS.gfsWeeks),
    gfsMonths: integerInRange(input.gfsMonths ?? 0, `${field}.gfsMonths`, 0, MAX_GFS.gfsMonths),
    gfsYears: integerInRange(input.gfsYears ?? 0, `${field}.gfsYears`, 0, MAX_GFS.gfsYears),
    weekStart: WEEK_STARTS.includes(input.weekStart ?? "MONDAY")
      ? (input.weekStart ?? "MONDAY")
      : fail(`${field}.weekStart`, `must be one of ${WEEK_STARTS.join(", ")} (got ${JSON.stringify(input.weekStart)})`),
    dayStartHour: integerInRange(input.dayStartHour ?? 0, `${field}.dayStartHour`, 0, 23),
  };
}

function isVmUuid(value: string): boolean {
  return isUuid(value);
}

function uniqueIds(values: unknown, field: string, valid: (value: string) => boolean, what: string): string[] {
  if (!Array.isArray(values)) throw new InputError(field, "must be a list");
  values.forEach((value, i) => {
    if (typeof value !== "string" || !valid(value)) throw new InputError(`${field}.${i}`, `must be ${what} (got ${JSON.stringify(value)})`);
  });
  return [...new Set(values as string[])];
}

function tags(values: unknown, field: string): string[] {
  return uniqueIds(values ?? [], field, (tag) => tag.trim().length > 0 && tag.length <= 100, "a tag of 1 to 100 characters");
}

function fail(field: string, message: string): never {
  throw new InputError(field, message);
}
