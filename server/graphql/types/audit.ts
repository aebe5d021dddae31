import { Field, ID, InputType, ObjectType } from "type-graphql";
import { connectionTypes } from "./connection.js";
import { DateTimeScalar, JSONScalar } from "./scalars.js";

@ObjectType({ description: "One mutation as it was asked and answered: who, what, on which object, when, from where, how it ended." })
export class AuditEntry {
  @Field(() => ID)
  id!: string;

  @Field(() => DateTimeScalar)
  at!: Date;

  @Field(() => ID, { nullable: true, description: "The signed-in user; null for an anonymous caller (a refused sign-in)." })
  userId!: string | null;

  @Field(() => String, { nullable: true, description: "The user's name; for a sign-in, the name that was tried." })
  username!: string | null;

  @Field(() => ID, { nullable: true, description: "The session or API token of the request." })
  tokenId!: string | null;

  @Field(() => String, { nullable: true, description: "SESSION (signed in with a password) or API (an API token)." })
  tokenKind!: string | null;

  @Field(() => String, { nullable: true, description: "The API token's name (null for a session)." })
  tokenName!: string | null;

  @Field(() => String, { nullable: true, description: "The caller's address, as the server saw it." })
  clientAddress!: string | null;

  @Field(() => String, { description: "HTTP or WS (graphql-ws)." })
  transport!: string;

  @Field(() => String, { description: "The mutation, e.g. createJob." })
  action!: string;

  @Field(() => String, {
    nullable: true,
    description: "The kind of object acted on: Job, Pool, Remote, RestorePoint, Run, ApiToken, User...",
  })
  objectType!: string | null;

  @Field(() => String, { nullable: true })
  objectId!: string | null;

  @Field(() => String, { nullable: true, description: "The object's name when it was known (a restore point: its VM's name)." })
  objectName!: string | null;

  @Field(() => Boolean)
  success!: boolean;

  @Field(() => String, { nullable: true, description: "The error's extensions.code when it failed." })
  errorCode!: string | null;

  @Field(() => String, { nullable: true, description: "The error message the client was given (internal errors leave none)." })
  message!: string | null;

  @Field(() => JSONScalar, { nullable: true, description: 'The arguments, every secret replaced by "[redacted]".' })
  arguments!: unknown;
}

export const { Connection: AuditEntryConnection } = connectionTypes(AuditEntry, "AuditEntry");

@InputType({ description: "Narrows the audit log; every field is optional and they combine (AND)." })
export class AuditLogFilter {
  @Field(() => ID, { nullable: true }) userId?: string | null;
  @Field(() => String, { nullable: true, description: "Exact user name (also the name tried by a refused sign-in)." }) username?:
    | string
    | null;
  @Field(() => String, { nullable: true, description: "The mutation's name, e.g. removeJob." }) action?: string | null;
  @Field(() => String, { nullable: true }) objectId?: string | null;
  @Field(() => Boolean, { nullable: true }) success?: boolean | null;
  @Field(() => DateTimeScalar, { nullable: true, description: "At or after." }) since?: Date | null;
  @Field(() => DateTimeScalar, { nullable: true, description: "Before." }) until?: Date | null;
}
