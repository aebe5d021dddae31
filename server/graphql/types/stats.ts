import { Field, Float, ID, Int, ObjectType, registerEnumType } from "type-graphql";
import { DateTimeScalar, SafeIntScalar } from "./scalars.js";
import { Vm } from "./pool.js";
import { RestorePoint } from "./restore-point.js";

export enum StorageGroupBy {
  REMOTE = "REMOTE",
  VM = "VM",
}
export enum TrendInterval {
  DAY = "DAY",
  WEEK = "WEEK",
}
export enum ExportFormat {
  CSV = "CSV",
  JSON = "JSON",
}
registerEnumType(StorageGroupBy, { name: "StorageGroupBy", description: "How storageTrend splits the bytes held on remotes." });
registerEnumType(TrendInterval, { name: "TrendInterval", description: "A day or an ISO week (Monday to Sunday) of the timeZone asked." });
registerEnumType(ExportFormat, {
  name: "ExportFormat",
  description: "CSV (RFC 4180, a header line, CRLF; cells starting with = + - @ are prefixed with ') or JSON (one array).",
});

@ObjectType({ description: "Backup totals of one group (a day, a week, a job, a VM or a remote)." })
export class StatsBucket {
  @Field(() => String, { description: "YYYY-MM-DD, IYYY-Www, a job id, a VM uuid or a remote id." })
  key!: string;

  @Field(() => String, { description: "A readable name for the key (job, VM or remote name)." })
  label!: string;

  @Field(() => Int, { description: "Backup runs (by VM: VM tasks) created in the range." }) runs!: number;
  @Field(() => Int, { description: "Of them, SUCCESS." }) succeeded!: number;
  @Field(() => Int, { description: "Of them, FAILURE or INTERRUPTED." }) failed!: number;
  @Field(() => Float, { nullable: true, description: "succeeded / (succeeded + failed), 0 to 1 (null: none ended either way)." })
  successRate!: number | null;
  @Field(() => SafeIntScalar, {
    description: "Bytes transferred (by VM: the VM's tasks; by remote: the restore points the runs left on that remote).",
  })
  bytes!: number;
  @Field(() => Int, { description: "Sum of the durations (end minus start) of those that ended." }) durationSeconds!: number;
  @Field(() => Float, { nullable: true, description: "Mean duration of those that ended (null: none did)." })
  avgDurationSeconds!: number | null;
  @Field(() => Int, { nullable: true, description: "Longest duration of those that ended (null: none did)." })
  maxDurationSeconds!: number | null;
}

@ObjectType({ description: "How well a VM is protected: its newest restore point not known to be broken." })
export class VmProtection {
  @Field(() => Vm)
  vm!: Vm;

  @Field(() => RestorePoint, { nullable: true })
  lastGoodRestorePoint!: RestorePoint | null;

  @Field(() => Float, { nullable: true, description: "Hours since that restore point (null: none)." })
  ageHours!: number | null;

  @Field(() => Boolean, { description: "Whether that restore point is younger than olderThanHours." })
  protected!: boolean;
}

@ObjectType({ description: "One restore point of a VM's RPO history." })
export class RpoPoint {
  @Field(() => ID) restorePointId!: string;
  @Field(() => DateTimeScalar) timestamp!: Date;
  @Field(() => Boolean, { description: "Not known to be broken (health check not FAILED, verify not DAMAGED): it counts." })
  good!: boolean;
  @Field(() => Int, { nullable: true, description: "Seconds since the previous good restore point (null: not good, or the first)." })
  gapSeconds!: number | null;
}

@ObjectType({ description: "The recovery point objective of a VM over a period: the target from its schedules, and what was achieved." })
export class VmRpo {
  @Field(() => Vm) vm!: Vm;
  @Field(() => Int, {
    nullable: true,
    description:
      "The target: the longest interval between consecutive fire times of a schedule, the tightest of the enabled schedules of the enabled jobs that select the VM now (null: no schedule protects it).",
  })
  targetSeconds!: number | null;
  @Field(() => Int, {
    description: "Allowed lateness on top of the target (snapshots are taken minutes after the fire time): a tenth of it, at most an hour.",
  })
  graceSeconds!: number;
  @Field(() => Int, {
    nullable: true,
    description:
      "The RPO achieved: the longest gap between consecutive good restore points over the period (the newest one before the period opens it), the current gap included (null: no good restore point).",
  })
  maxGapSeconds!: number | null;
  @Field(() => Int, { nullable: true, description: "From the newest good restore point to the end of the period (null: none)." })
  currentGapSeconds!: number | null;
  @Field(() => Int, { description: "Restore points taken in the period." }) restorePoints!: number;
  @Field(() => Int, { description: "Of them, good." }) goodRestorePoints!: number;
  @Field(() => Boolean, {
    description: "maxGapSeconds within targetSeconds + graceSeconds (false without a target or a good restore point).",
  })
  met!: boolean;
  @Field(() => [RpoPoint], { description: "The restore points of the period, oldest first." }) points!: RpoPoint[];
}

@ObjectType({ description: "Bytes held at the end of one day or week." })
export class StoragePoint {
  @Field(() => String, { description: "YYYY-MM-DD or IYYY-Www, in the timeZone asked." }) bucket!: string;
  @Field(() => DateTimeScalar, { description: "When the bucket starts." }) start!: Date;
  @Field(() => DateTimeScalar, { description: "When it was measured: the bucket's end, or `to` for the last one." }) at!: Date;
  @Field(() => SafeIntScalar, { description: "Sizes of the restore points present then." }) bytes!: number;
  @Field(() => Int, { description: "Restore points present then." }) restorePoints!: number;
}

@ObjectType({ description: "The bytes a remote (or a VM, over all remotes) held over time." })
export class StorageSeries {
  @Field(() => String, { description: "The remote id or the VM uuid." }) key!: string;
  @Field(() => String, { description: "The remote or VM name ('deleted remote' for a removed one)." }) label!: string;
  @Field(() => [StoragePoint]) points!: StoragePoint[];
}
