import { Field, ID, InputType, ObjectType } from "type-graphql";
import { DateTimeScalar, SafeIntScalar } from "./scalars.js";
import { PoolStatus } from "./enums.js";

@ObjectType({ description: "A host of a pool." })
export class Host {
  @Field(() => String)
  uuid!: string;

  @Field(() => String)
  name!: string;

  @Field(() => String)
  address!: string;
}

@ObjectType({ description: "A storage repository of a pool, read live from XAPI." })
export class Sr {
  @Field(() => String)
  uuid!: string;

  @Field(() => String)
  name!: string;

  @Field(() => String, { description: "The SR driver (lvm, ext, nfs, iso, ...)." })
  type!: string;

  @Field(() => String, { description: "XAPI's content_type (e.g. `iso` for ISO libraries)." })
  contentType!: string;

  @Field(() => SafeIntScalar)
  freeBytes!: number;

  @Field(() => SafeIntScalar)
  sizeBytes!: number;

  poolId!: string;
}

@ObjectType({ description: "A virtual machine of a pool, read live from XAPI." })
export class Vm {
  @Field(() => String)
  uuid!: string;

  @Field(() => String)
  name!: string;

  @Field(() => String, { description: "Running, Halted, Paused or Suspended." })
  powerState!: string;

  @Field(() => [String])
  tags!: string[];

  poolId!: string;
}

@ObjectType({ description: "A XAPI connection to a pool (its master host)." })
export class Pool {
  @Field(() => ID)
  id!: string;

  @Field(() => String)
  name!: string;

  @Field(() => String)
  url!: string;

  @Field(() => String)
  username!: string;

  @Field(() => Boolean, { description: "Whether a self-signed TLS certificate is accepted." })
  allowUnauthorized!: boolean;

  @Field(() => PoolStatus)
  status!: PoolStatus;

  @Field(() => String, { nullable: true, description: "Why the connection is not working, when it is not." })
  lastError!: string | null;

  @Field(() => DateTimeScalar, { nullable: true })
  connectedAt!: Date | null;
}

@InputType({ description: "How to reach a pool's master. The password is write-only." })
export class PoolInput {
  @Field(() => String)
  name!: string;

  @Field(() => String, { description: "http(s):// URL of the pool master." })
  url!: string;

  @Field(() => String)
  username!: string;

  @Field(() => String, { nullable: true, description: "Required to connect; on update, leave empty to keep the stored one." })
  password?: string | null;

  @Field(() => Boolean, { nullable: true, defaultValue: false })
  allowUnauthorized?: boolean | null;
}
