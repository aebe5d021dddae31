import { Field, Float, ID, InputType, Int, ObjectType } from "type-graphql";
import { DateTimeScalar, JSONScalar, SafeIntScalar } from "./scalars.js";
import { RunKind, RunStatus, TriggerKind } from "./enums.js";
import { connectionTypes } from "./connection.js";
import { RestorePoint } from "./restore-point.js";

@ObjectType({ description: "One node of a run's task tree: a VM, a snapshot, an export, a transfer, a merge, a clean-up..." })
export class Task {
  @Field(() => ID)
  id!: string;

  @Field(() => ID)
  runId!: string;

  @Field(() => ID, { nullable: true })
  parentId!: string | null;

  @Field(() => String, { description: "vm, snapshot, export, transfer, merge, clean, healthCheck, restore, ..." })
  kind!: string;

  @Field(() => String)
  name!: string;

  @Field(() => RunStatus)
  status!: RunStatus;

  @Field(() => Float, { description: "0 to 1." })
  progress!: number;

  @Field(() => DateTimeScalar)
  startedAt!: Date;

  @Field(() => DateTimeScalar, { nullable: true })
  endedAt!: Date | null;

  @Field(() => String, { nullable: true, description: "The error of a failed task, or a note." })
  message!: string | null;

  @Field(() => [String])
  warnings!: string[];

  @Field(() => JSONScalar, { nullable: true, description: "Sizes, ids and other figures the task produced." })
  result!: unknown;

  @Field(() => SafeIntScalar, { nullable: true })
  sizeBytes!: number | null;

  @Field(() => Float, {
    nullable: true,
    description: "Bytes per second: sizeBytes over the time since it started (to its end once ended); null when it moved none.",
  })
  bytesPerSecond!: number | null;

  @Field(() => Int, {
    nullable: true,
    description:
      "Seconds left, while it runs, from its progress and the time so far (elapsed x (1 - progress) / progress); null otherwise.",
  })
  etaSeconds!: number | null;

  @Field(() => String, { nullable: true })
  vmUuid!: string | null;

  @Field(() => DateTimeScalar, {
    nullable: true,
    description: "In a taskUpdated event: when the server published this change (to measure delivery delays). Null in queries.",
  })
  emittedAt?: Date | null;
}

@ObjectType({ description: "What a RESTORE run restores and where to: for its title and links." })
export class RunRestore {
  @Field(() => RestorePoint, { nullable: true, description: "The restore point restored (its VM name and time); null once removed." })
  restorePoint!: RestorePoint | null;

  @Field(() => ID, { description: "The restore point's id, kept when the restore point is removed." })
  restorePointId!: string;

  @Field(() => ID, { description: "The pool that receives the VM." })
  poolId!: string;

  @Field(() => String, { nullable: true, description: "That pool's name (null: removed since)." })
  poolName!: string | null;

  @Field(() => String, { description: "The target SR." })
  srUuid!: string;

  @Field(() => String, { nullable: true, description: "The target SR's name, as its pool shows it now (null: pool not connected)." })
  srName!: string | null;

  @Field(() => String, { nullable: true, description: "The new VM's uuid, once the restore made it." })
  vmUuid!: string | null;

  @Field(() => String, { nullable: true, description: "The new VM's name: asked for, or the default given at the end." })
  vmName!: string | null;
}

@ObjectType({ description: "One execution of a job (or a restore, or a health check)." })
export class Run {
  @Field(() => ID)
  id!: string;

  @Field(() => RunKind)
  kind!: RunKind;

  @Field(() => TriggerKind)
  trigger!: TriggerKind;

  @Field(() => RunStatus)
  status!: RunStatus;

  @Field(() => DateTimeScalar)
  createdAt!: Date;

  @Field(() => DateTimeScalar, { nullable: true })
  startedAt!: Date | null;

  @Field(() => DateTimeScalar, { nullable: true })
  endedAt!: Date | null;

  @Field(() => Int, { nullable: true })
  durationSeconds!: number | null;

  @Field(() => String, { nullable: true, description: "Why the run failed, was interrupted or cancelled." })
  error!: string | null;

  @Field(() => Float, { description: "0 to 1." })
  progress!: number;

  @Field(() => SafeIntScalar)
  transferredBytes!: number;

  @Field(() => Float, {
    nullable: true,
    description: "Bytes per second: transferredBytes over the time since it started (to its end once ended); null when none moved.",
  })
  bytesPerSecond!: number | null;

  @Field(() => Int, {
    nullable: true,
    description:
      "Seconds left, while it runs, from its progress and the time so far (elapsed x (1 - progress) / progress); null otherwise.",
  })
  etaSeconds!: number | null;

  @Field(() => Int)
  vmsTotal!: number;

  @Field(() => Int)
  vmsSucceeded!: number;

  @Field(() => Int)
  vmsFailed!: number;

  @Field(() => [String], { description: "The VMs selected when the run started." })
  vmUuids!: string[];

  @Field(() => DateTimeScalar, {
    nullable: true,
    description: "In a runUpdated event: when the server published this change (to measure delivery delays). Null in queries.",
  })
  emittedAt?: Date | null;

  jobId!: string | null;
  scheduleId!: string | null;
  /** The run's parameters (a restore's input), for field resolvers. */
  params?: unknown;
}

export const { Connection: RunConnection } = connectionTypes(Run, "Run");

@InputType({ description: "Narrows the runs listed; every field is optional." })
export class RunFilter {
  @Field(() => ID, { nullable: true }) jobId?: string | null;
  @Field(() => [RunStatus], { nullable: true }) status?: RunStatus[] | null;
  @Field(() => DateTimeScalar, { nullable: true, description: "Created at or after." }) from?: Date | null;
  @Field(() => DateTimeScalar, { nullable: true, description: "Created before." }) to?: Date | null;
  @Field(() => String, { nullable: true }) vmUuid?: string | null;
  @Field(() => String, { nullable: true, description: "Matches the job name, a VM name or the error." }) search?: string | null;
}
