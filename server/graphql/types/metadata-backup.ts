import { Field, ID, InputType, ObjectType } from "type-graphql";
import { DateTimeScalar, JSONScalar, SafeIntScalar } from "./scalars.js";
import { MetadataBackupKind, RemoteKind } from "./enums.js";

@ObjectType({
  description:
    "A metadata backup on a remote (a METADATA job's work): a pool's database (POOL, XAPI's /pool/xmldbdump) or Cairn's own configuration (CAIRN).",
})
export class MetadataBackup {
  @Field(() => ID)
  id!: string;

  @Field(() => MetadataBackupKind)
  kind!: MetadataBackupKind;

  @Field(() => ID, { nullable: true, description: "POOL: the pool in this Cairn (null when no connected pool has its uuid)." })
  poolId!: string | null;

  @Field(() => String, { nullable: true, description: "POOL: the pool's XAPI uuid." })
  poolUuid!: string | null;

  @Field(() => String, { nullable: true, description: "POOL: the pool's name when it was backed up." })
  poolName!: string | null;

  @Field(() => ID)
  remoteId!: string;

  @Field(() => String)
  remoteName!: string;

  @Field(() => String, { description: 'The backup\'s folder on the remote (server/repository/FORMAT.md, "Metadata backups").' })
  path!: string;

  @Field(() => DateTimeScalar)
  timestamp!: Date;

  @Field(() => SafeIntScalar)
  sizeBytes!: number;

  @Field(() => Boolean, { description: "CAIRN: whether passwords and keys are in it (written to an encrypted remote)." })
  secretsIncluded!: boolean;

  @Field(() => ID, { nullable: true })
  jobId!: string | null;

  @Field(() => ID, { nullable: true })
  runId!: string | null;
}

@ObjectType({ description: "The answer of restorePoolMetadata." })
export class PoolMetadataRestore {
  @Field(() => String)
  poolName!: string;

  @Field(() => String, { description: "What happened and what follows (the pool's toolstack restarts; the connection reconnects)." })
  message!: string;
}

@ObjectType({ description: "A configuration backup on a remote, as configurationBackups lists them for the drill." })
export class ConfigurationBackup {
  @Field(() => String, { description: "Its folder on the remote: give it to restoreConfiguration to pick this one." })
  path!: string;

  @Field(() => DateTimeScalar)
  timestamp!: Date;

  @Field(() => SafeIntScalar)
  sizeBytes!: number;

  @Field(() => Boolean)
  secretsIncluded!: boolean;

  @Field(() => String, { nullable: true, description: "The METADATA job that wrote it." })
  jobName!: string | null;
}

@ObjectType({ description: "What restoreConfiguration restored, kept and left to do." })
export class ConfigurationRestore {
  @Field(() => ConfigurationBackup)
  backup!: ConfigurationBackup;

  @Field(() => [String], { description: "Users created (with their password hashes and roles: they sign in as before)." })
  users!: string[];

  @Field(() => [String])
  pools!: string[];

  @Field(() => [String])
  remotes!: string[];

  @Field(() => [String], { description: "Jobs created, with the ids they had (their schedules too)." })
  jobs!: string[];

  @Field(() => SafeIntScalar)
  schedules!: number;

  @Field(() => [String], { description: "Objects of the backup whose name was taken here: this Cairn's own were kept." })
  kept!: string[];

  @Field(() => [String], {
    description: "One sentence per restored object that needs a secret entered again (a backup on a plain remote holds none).",
  })
  needsSecrets!: string[];

  @Field(() => String)
  message!: string;
}

@InputType({
  description:
    "The remote that holds the configuration backups, as createRemote takes it (it is not registered in this Cairn yet). Secrets are write-only.",
})
export class DrillRemoteInput {
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

  @Field(() => String, { nullable: true, description: "The remote's encryption passphrase or key, when it is encrypted." })
  encryptionKey?: string | null;
}

@InputType({ description: "restoreConfiguration: the remote, and the backup (its path; absent: the newest)." })
export class ConfigurationRestoreInput {
  @Field(() => DrillRemoteInput)
  remote!: DrillRemoteInput;

  @Field(() => String, { nullable: true })
  path?: string | null;
}
