import { Field, Float, Int, ObjectType } from "type-graphql";
import { SafeIntScalar } from "./scalars.js";
import { Vm } from "./pool.js";
import { RestorePoint } from "./restore-point.js";

@ObjectType({ description: "Backup totals of one group (a day, a week, a job or a VM)." })
export class StatsBucket {
  @Field(() => String, { description: "YYYY-MM-DD, IYYY-Www, a job id or a VM uuid." })
  key!: string;

  @Field(() => String, { description: "A readable name for the key (job or VM name)." })
  label!: string;

  @Field(() => Int) runs!: number;
  @Field(() => Int) succeeded!: number;
  @Field(() => Int) failed!: number;
  @Field(() => SafeIntScalar) bytes!: number;
  @Field(() => Int) durationSeconds!: number;
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
