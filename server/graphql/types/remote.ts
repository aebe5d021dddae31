import { Field, ID, InputType, Int, ObjectType } from "type-graphql";
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

  @Field(() => Boolean, {
    description:
      'Whether the remote\'s files are encrypted at rest (AES-256-GCM in 64 KiB chunks, server/repository/FORMAT.md, "Encryption"). The key is write-only and never returned.',
  })
  encrypted!: boolean;

  @Field(() => Int, {
    description:
      "Immutability window in days (0: off): every backup's files stay immutable that long once the backup is complete, so that nobody, Cairn included, can change or delete them (LOCAL: the immutable attribute, Cairn running as root; S3: Object Lock in COMPLIANCE mode). See RestorePoint.immutableUntil.",
  })
  immutabilityDays!: number;
}

@InputType({
  description: "A remote's settings. `password` and `encryptionKey` are write-only: on update, leave them out to keep the stored ones.",
})
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

  @Field(() => String, {
    nullable: true,
    description:
      'Encrypts the remote at rest: a passphrase (12 characters or more) or a 32-byte key (64 hex digits or base64). Write-only, sealed like the password, never returned nor logged. The remote must be empty when encryption is first set (its key check file is written then); on another Cairn, the same key opens it and a wrong one is refused at once. On update: absent keeps the key, "" removes encryption; any change is refused (CONFLICT) while the remote holds backups.',
  })
  encryptionKey?: string | null;

  @Field(() => Int, {
    nullable: true,
    description:
      "Immutability window in days, 0 to 3650 (0: off; absent: 0 on create, unchanged on update). LOCAL needs Cairn to run as root on a file system keeping the immutable attribute (ext4, xfs, btrfs); S3 needs a bucket created with Object Lock on; NFS and SMB are refused (the server decides there). Checked when the remote is saved and by testRemote.",
  })
  immutabilityDays?: number | null;

  @Field(() => Boolean, { nullable: true, defaultValue: true })
  enabled?: boolean | null;
}
