import { Field, ID, InputType, Int, ObjectType } from "type-graphql";
import { DateTimeScalar } from "./scalars.js";
import { BackupMode, Compression, ReportWhen, WeekStart } from "./enums.js";

@ObjectType({ description: "A pattern evaluated when a run starts: VMs of these pools, with these tags and power states." })
export class SmartSelection {
  @Field(() => [String], { description: "Pools to take VMs from (empty: every pool)." })
  poolIds!: string[];

  @Field(() => [String], { description: "A VM must carry every one of these tags." })
  tagsAll!: string[];

  @Field(() => [String], { description: "A VM must carry at least one of these tags (when any)." })
  tagsAny!: string[];

  @Field(() => [String], { description: "A VM carrying any of these tags is left out (`cairn:no-bak` always is)." })
  tagsNone!: string[];

  @Field(() => [String], { description: "Power states to take (empty: all)." })
  powerStates!: string[];
}

@ObjectType({ description: "Which VMs a job protects: explicit uuids, or a smart pattern." })
export class Selection {
  @Field(() => [String])
  vmUuids!: string[];

  @Field(() => SmartSelection, { nullable: true })
  smart!: SmartSelection | null;
}

@ObjectType({ description: "How a job runs." })
export class JobSettings {
  @Field(() => Compression, { description: "XVA compression (FULL, DISASTER_RECOVERY)." })
  compression!: Compression;

  @Field(() => Int, { description: "VMs backed up at once." })
  concurrency!: number;

  @Field(() => Int, { nullable: true, description: "A run still going after this many seconds is stopped and failed." })
  timeoutSeconds!: number | null;

  @Field(() => Int, { description: "DELTA: every N-th backup of a chain is a full (0: only when needed)." })
  fullInterval!: number;

  @Field(() => Int, { description: "Times a failed VM is tried again within the run." })
  retries!: number;

  @Field(() => Boolean, { description: "Try a quiesced snapshot first (falls back with a warning)." })
  quiesce!: boolean;

  @Field(() => String, { nullable: true, description: "When set, each new backup is restored here, booted and destroyed." })
  healthCheckSrUuid!: string | null;

  @Field(() => Boolean, {
    description:
      "DELTA: after the first full, each delta reads only the blocks Changed Block Tracking names, through NBD, and the " +
      "snapshot's data is destroyed after the run (its CBT metadata stays). Needs a network with purpose nbd (TLS) or insecure_nbd; " +
      "falls back to the export path (a full) with a warning when CBT was reset, NBD is not offered or a connection breaks.",
  })
  cbtNbd!: boolean;

  @Field(() => Int, { description: "DELTA with cbtNbd: NBD connections per disk." })
  nbdConnections!: number;

  @Field(() => Boolean, {
    description: "METADATA: back up Cairn's own configuration (jobs, schedules, remotes, pools, users) besides the pools' databases.",
  })
  includeConfiguration!: boolean;

  @Field(() => ReportWhen, {
    description:
      "When a report is sent after a backup run: ALWAYS, on FAILURE (also INTERRUPTED, and SKIPPED because the job was busy), or NEVER.",
  })
  reportWhen!: ReportWhen;

  @Field(() => [String], { description: "Addresses the run report is mailed to (SMTP_URL must be set); at most 20." })
  reportEmails!: string[];

  @Field(() => String, {
    nullable: true,
    description:
      "The http(s) URL the run report is POSTed to as JSON (event run.ended), write-only as a secret: read, it is only " +
      "`https://host/…` (its path and query usually hold a token); null when there is none.",
  })
  reportWebhookUrl!: string | null;

  @Field(() => String, { nullable: true, description: "The host (and port) of the report webhook; null when there is none." })
  reportWebhookHost!: string | null;

  @Field(() => Int, {
    description: "VERIFY: verify only the restore points not verified within this many days (0: every restore point at every run).",
  })
  verifyOlderThanDays!: number;
}

@ObjectType({ description: "When a job runs, and how many of its backups each kind of retention keeps." })
export class Schedule {
  @Field(() => ID)
  id!: string;

  @Field(() => String, { nullable: true })
  name!: string | null;

  @Field(() => String, {
    description:
      "Cron expression: 5 fields (minute hour day month weekday); 6 with a leading fixed second; 7 adding a year; or " +
      "@hourly, @daily, @weekly, @monthly, @yearly. Fires at most once a minute.",
  })
  cron!: string;

  @Field(() => String, { description: "IANA time zone the cron expression is read in." })
  timezone!: string;

  @Field(() => Boolean)
  enabled!: boolean;

  @Field(() => Int, { description: "Backups kept on each remote (FULL, DELTA)." })
  exportRetention!: number;

  @Field(() => Int, { description: "Replicas kept on each SR (DISASTER_RECOVERY, CONTINUOUS_REPLICATION)." })
  copyRetention!: number;

  @Field(() => Int, { description: "Snapshots kept on the VM's pool." })
  snapshotRetention!: number;

  @Field(() => Int, {
    description:
      "GFS retention (FULL, DELTA), besides the newest exportRetention: the oldest backup of each of the last this many days " +
      "of `timezone` is kept too (0: off). Days start at dayStartHour; a day of 23 or 25 hours (DST) is one day.",
  })
  gfsDays!: number;

  @Field(() => Int, { description: "GFS: the oldest backup of each of the last this many weeks (starting on weekStart) is kept (0: off)." })
  gfsWeeks!: number;

  @Field(() => Int, { description: "GFS: the oldest backup of each of the last this many calendar months is kept (0: off)." })
  gfsMonths!: number;

  @Field(() => Int, { description: "GFS: the oldest backup of each of the last this many calendar years is kept (0: off)." })
  gfsYears!: number;

  @Field(() => WeekStart, { description: "GFS: the day a week starts on." })
  weekStart!: WeekStart;

  @Field(() => Int, { description: "GFS: the local hour (0 to 23, in `timezone`) at which a day starts; 0 is midnight." })
  dayStartHour!: number;

  @Field(() => DateTimeScalar, { nullable: true, description: "When it fires next (null when disabled)." })
  nextRunAt!: Date | null;
}

@ObjectType({ description: "A backup job: what to protect, how, where, and when." })
export class Job {
  @Field(() => ID)
  id!: string;

  @Field(() => String)
  name!: string;

  @Field(() => BackupMode)
  mode!: BackupMode;

  @Field(() => Boolean)
  enabled!: boolean;

  @Field(() => Selection)
  selection!: Selection;

  @Field(() => [String], { description: "Target SRs (DISASTER_RECOVERY, CONTINUOUS_REPLICATION)." })
  srUuids!: string[];

  @Field(() => JobSettings)
  settings!: JobSettings;

  @Field(() => [Schedule])
  schedules!: Schedule[];

  @Field(() => DateTimeScalar)
  createdAt!: Date;

  @Field(() => DateTimeScalar)
  updatedAt!: Date;

  remoteIds!: string[];

  sourceRemoteId!: string | null;
}

@InputType({ description: "A smart pattern; every list may be empty." })
export class SmartSelectionInput {
  @Field(() => [String], { nullable: true }) poolIds?: string[];
  @Field(() => [String], { nullable: true }) tagsAll?: string[];
  @Field(() => [String], { nullable: true }) tagsAny?: string[];
  @Field(() => [String], { nullable: true }) tagsNone?: string[];
  @Field(() => [String], { nullable: true }) powerStates?: string[];
}

@InputType({ description: "Either vmUuids or smart." })
export class SelectionInput {
  @Field(() => [String], { nullable: true }) vmUuids?: string[] | null;
  @Field(() => SmartSelectionInput, { nullable: true }) smart?: SmartSelectionInput | null;
}

@InputType({ description: "Job settings; anything left out takes its default." })
export class JobSettingsInput {
  @Field(() => Compression, { nullable: true }) compression?: Compression | null;
  @Field(() => Int, { nullable: true }) concurrency?: number | null;
  @Field(() => Int, { nullable: true }) timeoutSeconds?: number | null;
  @Field(() => Int, { nullable: true }) fullInterval?: number | null;
  @Field(() => Int, { nullable: true }) retries?: number | null;
  @Field(() => Boolean, { nullable: true }) quiesce?: boolean | null;
  @Field(() => String, { nullable: true }) healthCheckSrUuid?: string | null;
  @Field(() => Boolean, { nullable: true, description: "DELTA jobs only: read deltas through CBT + NBD (see JobSettings.cbtNbd)." })
  cbtNbd?: boolean | null;
  @Field(() => Int, { nullable: true, description: "DELTA with cbtNbd: NBD connections per disk (1 to 16; default 2)." })
  nbdConnections?: number | null;
  @Field(() => Boolean, { nullable: true, description: "METADATA jobs: back up Cairn's own configuration too (default true)." })
  includeConfiguration?: boolean | null;
  @Field(() => ReportWhen, { nullable: true }) reportWhen?: ReportWhen | null;
  @Field(() => [String], { nullable: true, description: "Addresses the run report is mailed to; at most 20." }) reportEmails?:
    | string[]
    | null;
  @Field(() => String, {
    nullable: true,
    description:
      "http(s) URL the run report is POSTed to as JSON. Write-only: left out, the stored URL is kept (as when the redacted " +
      "form read back is sent); null or empty removes it. Loopback, unspecified and link-local targets are refused unless " +
      "REPORT_WEBHOOK_ALLOW_PRIVATE=true.",
  })
  reportWebhookUrl?: string | null;
  @Field(() => Int, {
    nullable: true,
    description: "VERIFY jobs only: verify only the restore points not verified within this many days (0 to 3650; 0: all).",
  })
  verifyOlderThanDays?: number | null;
}

@InputType({ description: "A schedule; give `id` to keep an existing schedule (and its history) when updating a job." })
export class ScheduleInput {
  @Field(() => ID, { nullable: true }) id?: string | null;
  @Field(() => String, { nullable: true }) name?: string | null;
  @Field(() => String, {
    description:
      'Cron expression, read in `timezone`: 5 fields "minute hour day month weekday" ("0 2 * * *": 02:00 daily); 6 with a ' +
      "leading fixed second; 7 adding a year; or @hourly, @daily, @weekly, @monthly, @yearly. Refused when it can fire more " +
      "than once a minute or never fires. A job has at most 20 schedules.",
  })
  cron!: string;
  @Field(() => String, { nullable: true, defaultValue: "UTC" }) timezone?: string | null;
  @Field(() => Boolean, { nullable: true, defaultValue: true }) enabled?: boolean | null;
  @Field(() => Int, { nullable: true, defaultValue: 0 }) exportRetention?: number | null;
  @Field(() => Int, { nullable: true, defaultValue: 0 }) copyRetention?: number | null;
  @Field(() => Int, { nullable: true, defaultValue: 0 }) snapshotRetention?: number | null;
  @Field(() => Int, {
    nullable: true,
    defaultValue: 0,
    description:
      "FULL, DELTA: besides the newest exportRetention, keep the oldest backup of each of the last this many days (0 to 3660; 0: off).",
  })
  gfsDays?: number | null;
  @Field(() => Int, {
    nullable: true,
    defaultValue: 0,
    description: "FULL, DELTA: keep the oldest backup of each of the last this many weeks (0 to 520; 0: off).",
  })
  gfsWeeks?: number | null;
  @Field(() => Int, {
    nullable: true,
    defaultValue: 0,
    description: "FULL, DELTA: keep the oldest backup of each of the last this many months (0 to 1200; 0: off).",
  })
  gfsMonths?: number | null;
  @Field(() => Int, {
    nullable: true,
    defaultValue: 0,
    description: "FULL, DELTA: keep the oldest backup of each of the last this many years (0 to 100; 0: off).",
  })
  gfsYears?: number | null;
  @Field(() => WeekStart, { nullable: true, defaultValue: WeekStart.MONDAY, description: "The day a GFS week starts on." })
  weekStart?: WeekStart | null;
  @Field(() => Int, {
    nullable: true,
    defaultValue: 0,
    description: "The local hour (0 to 23, in `timezone`) at which a GFS day starts; 0 is midnight.",
  })
  dayStartHour?: number | null;
}

@InputType({ description: "A whole job: updateJob replaces every setting, remote and schedule with these." })
export class JobInput {
  @Field(() => String) name!: string;
  @Field(() => BackupMode) mode!: BackupMode;
  @Field(() => SelectionInput) selection!: SelectionInput;
  @Field(() => [ID], {
    nullable: true,
    description: "Target remotes (FULL, DELTA); for VERIFY, the remotes whose restore points it verifies.",
  })
  remoteIds?: string[] | null;
  @Field(() => ID, {
    nullable: true,
    description: "MIRROR: the remote whose restore points are copied to remoteIds (not one of them); empty for the other modes.",
  })
  sourceRemoteId?: string | null;
  @Field(() => [String], {
    nullable: true,
    description: "Target SRs (DISASTER_RECOVERY, CONTINUOUS_REPLICATION); empty for the other modes.",
  })
  srUuids?: string[] | null;
  @Field(() => JobSettingsInput, { nullable: true }) settings?: JobSettingsInput | null;
  @Field(() => [ScheduleInput], { nullable: true }) schedules?: ScheduleInput[] | null;
  @Field(() => Boolean, { nullable: true, defaultValue: true }) enabled?: boolean | null;
}
