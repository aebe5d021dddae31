import { Field, ID, ObjectType } from "type-graphql";
import { DateTimeScalar } from "./scalars.js";
import { Role } from "./enums.js";

@ObjectType({ description: "A person or integration that signs in." })
export class User {
  @Field(() => ID)
  id!: string;

  @Field(() => String)
  username!: string;

  @Field(() => Role)
  role!: Role;
}

@ObjectType({ description: "The answer to login: a bearer token for `Authorization: Bearer <token>`." })
export class AuthPayload {
  @Field(() => String, { description: "Session token; it expires (SESSION_HOURS) and can be revoked by signing out." })
  token!: string;

  @Field(() => User)
  user!: User;
}

@ObjectType({ description: "A long-lived token for scripts and integrations (its secret is shown once, at creation)." })
export class ApiToken {
  @Field(() => ID)
  id!: string;

  @Field(() => String)
  name!: string;

  @Field(() => Role, { description: "What the token may do (never more than its owner)." })
  role!: Role;

  @Field(() => DateTimeScalar)
  createdAt!: Date;

  @Field(() => DateTimeScalar, { nullable: true })
  revokedAt!: Date | null;
}

@ObjectType({ description: "A new API token with its secret: store the secret now, it is never shown again." })
export class ApiTokenSecret {
  @Field(() => ID)
  id!: string;

  @Field(() => String)
  name!: string;

  @Field(() => Role)
  role!: Role;

  @Field(() => String, { description: "The bearer secret." })
  token!: string;
}
