import { Field, ObjectType } from "type-graphql";
import { RestorePoint } from "./restore-point.js";

@ObjectType({ description: "What a schedule's next run would do to one of its restore points, and why." })
export class RetentionDecision {
  @Field(() => RestorePoint)
  restorePoint!: RestorePoint;

  @Field(() => Boolean, { description: "False: the next run's retention removes it." })
  keep!: boolean;

  @Field(() => [String], {
    description:
      'Each rule that keeps it ("newest 3", "oldest of day 2026-03-29", "oldest of week 2026-W13", "oldest of week from ' +
      'Sunday 2026-03-29", "oldest of month 2026-03", "oldest of year 2026"); for a point removed, one sentence saying why none does.',
  })
  reasons!: string[];
}
