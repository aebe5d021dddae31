import { Field, ID, InputType, ObjectType } from "type-graphql";
import { MIN_PASSWORD_LENGTH } from "../../config.js";
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

  @Field(() => Boolean, { description: "A disabled user cannot sign in, and its sessions and API tokens are refused." })
  disabled!: boolean;

  @Field(() => DateTimeScalar)
  createdAt!: Date;
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

  @Field(() => User, { description: "Whose token it is (an ADMIN lists everyone's)." })
  owner!: User;

  @Field(() => DateTimeScalar)
  createdAt!: Date;

  @Field(() => DateTimeScalar, { nullable: true })
  revokedAt!: Date | null;

  @Field(() => DateTimeScalar, { nullable: true, description: "Last time it was used, to the minute (null: never)." })
  lastUsedAt!: Date | null;

  @Field(() => String, { nullable: true, description: "The client address it was created from." })
  createdFrom!: string | null;
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

@ObjectType({ description: "A live sign-in session (a browser or a client that signed in with a password)." })
export class Session {
  @Field(() => ID)
  id!: string;

  @Field(() => Boolean, { description: "Whether this is the session of the request that asked." })
  current!: boolean;

  @Field(() => DateTimeScalar)
  createdAt!: Date;

  @Field(() => DateTimeScalar)
  expiresAt!: Date;

  @Field(() => DateTimeScalar, { nullable: true, description: "Last time it was used, to the minute." })
  lastUsedAt!: Date | null;

  @Field(() => String, { nullable: true, description: "The client address that signed in." })
  createdFrom!: string | null;
}

@InputType({ description: `A new user. The password: at least ${MIN_PASSWORD_LENGTH} characters, not the user name.` })
export class CreateUserInput {
  @Field(() => String, { description: "1 to 64 characters: letters, digits and . _ @ -; unique without regard to case." })
  username!: string;

  @Field(() => String)
  password!: string;

  @Field(() => Role)
  role!: Role;
}

@InputType({ description: "What to change of a user; a field left out is kept." })
export class UpdateUserInput {
  @Field(() => Role, { nullable: true })
  role?: Role | null;

  @Field(() => Boolean, { nullable: true, description: "true: refuse its sign-ins, sessions and tokens; false: enable it again." })
  disabled?: boolean | null;
}

/** A user row as the API shows it (never its password hash). */
export function toUser(row: { id: string; username: string; role: string; disabledAt: Date | null; createdAt: Date }): User {
  return { id: row.id, username: row.username, role: row.role as Role, disabled: row.disabledAt !== null, createdAt: row.createdAt };
}
