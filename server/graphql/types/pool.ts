import { Field, ID, InputType, ObjectType } from "type-graphql";
import { DateTimeScalar, SafeIntScalar } from "./scalars.js";
import { PoolStatus, VmRole } from "./enums.js";

@ObjectType({ description: "A host of a pool." })
export class Host {
  @Field(() => String)
  uuid!: string;

  @Field(() => String)
  name!: string;

  @Field(() => String)
  address!: string;

  @Field(() => Boolean, { description: "Whether this host is the pool's master, the one Cairn talks to." })
  master!: boolean;

  @Field(() => String, {
    nullable: true,
    description: "The product and version the host runs (e.g. `XCP-ng 8.3.0`), from its software_version; null when it does not say.",
  })
  version!: string | null;
}

@ObjectType({ description: "One change of the state of Cairn's connection to a pool, as the process answering saw it." })
export class PoolConnectionChange {
  @Field(() => DateTimeScalar)
  at!: Date;

  @Field(() => PoolStatus, { description: "The state the connection went into." })
  status!: PoolStatus;

  @Field(() => String, {
    nullable: true,
    description: "Why: the error when the connection failed or was lost; null when nothing needs saying.",
  })
  reason!: string | null;
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

  @Field(() => VmRole, {
    description:
      "What the VM is to Cairn, from its tags: only a VM of role VM is expected to be backed up (replicas, restored and health-check VMs are Cairn's own products; EXCLUDED is left out on purpose).",
  })
  role!: VmRole;

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

  @Field(() => Boolean, {
    description: "Whether any TLS certificate is accepted (discouraged: Cairn pins the pool's certificate instead, see tlsFingerprint).",
  })
  allowUnauthorized!: boolean;

  @Field(() => String, {
    nullable: true,
    description:
      "SHA-256 fingerprint (AB:CD:…) of the TLS certificate the pool must present: pinned when the pool was connected (trust on first use) or given by the admin; changed only by trustPoolCertificate. Null for plain HTTP.",
  })
  tlsFingerprint!: string | null;

  @Field(() => String, {
    nullable: true,
    description:
      "While Cairn refuses the pool's certificate (it changed, or none is pinned): the SHA-256 fingerprint the pool presents, to check on the host before trustPoolCertificate. Null otherwise.",
  })
  presentedFingerprint!: string | null;

  @Field(() => PoolStatus)
  status!: PoolStatus;

  @Field(() => String, { nullable: true, description: "Why the connection is not working, when it is not." })
  lastError!: string | null;

  @Field(() => DateTimeScalar, { nullable: true })
  connectedAt!: Date | null;

  @Field(() => String, {
    nullable: true,
    description: "What will not work on this pool (its XAPI is older than what Cairn calls needs); null when nothing.",
  })
  warning!: string | null;
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

  @Field(() => Boolean, { nullable: true, defaultValue: false, description: "Accept any TLS certificate (discouraged)." })
  allowUnauthorized?: boolean | null;

  @Field(() => String, {
    nullable: true,
    description:
      "The SHA-256 fingerprint the pool's certificate must have (as `openssl x509 -fingerprint -sha256` prints it); leave empty to trust the certificate the pool presents now.",
  })
  tlsFingerprint?: string | null;
}
