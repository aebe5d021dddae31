import { Field, ID, InputType, ObjectType } from "type-graphql";
import { DateTimeScalar, JSONScalar, SafeIntScalar } from "./scalars.js";
import { RemoteKind, RemoteStatus } from "./enums.js";

@ObjectType({ description: "The outcome of writing, reading back and deleting a test file on a remote." })
export class RemoteTest {
  @Field(() => Boolean)
  ok!: boolean;

  @Field(() => SafeIntScalar)
  writeBytesPerSecond!: number;

  @Field(() => SafeIntScalar)
  readBytesPerSecond!: number;

  @Field(() => String, { nullable: true })
  error!: string | null;

  @Field(() => DateTimeScalar)
  testedAt!: Date;
}

@ObjectType({ description: "Where backups are stored. Credentials are write-only and never returned." })
export class Remote {
  @Field(() => ID)
  id!: string;

  @Field(() => String)
  name!: string;

  @Field(() => RemoteKind)
  kind!: RemoteKind;

  @Field(() => String, { description: "LOCAL: an absolute folder; S3: bucket or bucket/prefix." })
  location!: string;

  @Field(() => JSONScalar, { description: "Kind-specific settings (S3: endpoint, region, forcePathStyle, ...)." })
  options!: unknown;

  @Field(() => String, { nullable: true, description: "User name or access key id (not secret)." })
  username!: string | null;

  @Field(() => Boolean)
  enabled!: boolean;

  @Field(() => RemoteStatus)
  status!: RemoteStatus;

  @Field(() => RemoteTest, { nullable: true })
  lastTest!: RemoteTest | null;

  @Field(() => SafeIntScalar, { nullable: true, description: "Free space of the file system or bucket, at the last test (null: unknown)." })
  freeBytes!: number | null;

  @Field(() => SafeIntScalar, {
    nullable: true,
    description: "Space used on the whole file system or bucket, Cairn's backups and everything else, at the last test (see backupBytes).",
  })
  usedBytes!: number | null;
}

@InputType({ description: "A remote's settings. `password` is write-only: on update, leave it empty to keep the stored one." })
export class RemoteInput {
  @Field(() => String)
  name!: string;

  @Field(() => RemoteKind)
  kind!: RemoteKind;

  @Field(() => String)
  location!: string;

  @Field(() => JSONScalar, { nullable: true })
  options?: Record<string, unknown> | null;

  @Field(() => String, { nullable: true })
  username?: string | null;

  @Field(() => String, { nullable: true })
  password?: string | null;

  @Field(() => Boolean, { nullable: true, defaultValue: true })
  enabled?: boolean | null;
}
