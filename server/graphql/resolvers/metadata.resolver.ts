import { Arg, Authorized, Ctx, ID, Int, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { MetadataBackupKind, Role } from "../types/enums.js";
import {
  ConfigurationBackup,
  ConfigurationRestore,
  ConfigurationRestoreInput,
  DrillRemoteInput,
  MetadataBackup,
  PoolMetadataRestore,
} from "../types/metadata-backup.js";

type MetadataBackupRow = Awaited<ReturnType<GraphQLContext["services"]["metadataBackups"]["list"]>>[number];

function toMetadataBackup(row: MetadataBackupRow): MetadataBackup {
  return {
    id: row.id,
    kind: row.kind as MetadataBackupKind,
    poolId: row.poolId,
    poolUuid: row.poolUuid,
    poolName: row.poolName,
    remoteId: row.remoteId,
    remoteName: row.remote.name,
    path: row.path,
    timestamp: row.timestamp,
    sizeBytes: Number(row.sizeBytes),
    secretsIncluded: row.secretsIncluded,
    jobId: row.jobId,
    runId: row.runId,
  };
}

@Resolver(() => MetadataBackup)
export class MetadataBackupResolver {
  @Authorized(Role.VIEWER)
  @Query(() => [MetadataBackup], {
    description: "Metadata backups (pool databases and Cairn's configuration) on the registered remotes, newest first (at most 1000).",
  })
  async metadataBackups(
    @Arg("remoteId", () => ID, { nullable: true }) remoteId: string | null,
    @Arg("poolId", () => ID, { nullable: true }) poolId: string | null,
    @Arg("kind", () => MetadataBackupKind, { nullable: true }) kind: MetadataBackupKind | null,
    @Ctx() { services }: GraphQLContext,
  ): Promise<MetadataBackup[]> {
    return (await services.metadataBackups.list({ remoteId, poolId, kind })).map(toMetadataBackup);
  }

  @Authorized(Role.ADMIN)
  @Query(() => [ConfigurationBackup], {
    description:
      "The disaster-recovery drill's first step: the configuration backups on a remote that is not registered here (given as createRemote takes it, with its encryption key when encrypted), newest first.",
  })
  async configurationBackups(
    @Arg("remote", () => DrillRemoteInput) remote: DrillRemoteInput,
    @Ctx() { services }: GraphQLContext,
  ): Promise<ConfigurationBackup[]> {
    return services.metadataBackups.configurationBackups(remote);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Int, { description: "Re-indexes the metadata backups a registered remote holds; returns how many." })
  async scanMetadataBackups(@Arg("remoteId", () => ID) remoteId: string, @Ctx() { services }: GraphQLContext): Promise<number> {
    return services.metadataBackups.scan(remoteId);
  }

  @Authorized(Role.OPERATOR)
  @Mutation(() => PoolMetadataRestore, {
    description:
      "Sends a pool metadata backup back to its pool (PUT /pool/xmldbdump): the pool's database becomes the backup's (VMs, networks, SRs as they were then). XAPI restarts its toolstack on it: sessions end and Cairn's connection reconnects by itself. CONFLICT when the pool is not connected; INTEGRITY when the backup is damaged (nothing is sent).",
  })
  async restorePoolMetadata(@Arg("id", () => ID) id: string, @Ctx() { services, principal }: GraphQLContext): Promise<PoolMetadataRestore> {
    return services.metadataBackups.restorePoolMetadata(id, principal);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => ConfigurationRestore, {
    description:
      "The disaster-recovery drill: restores Cairn's configuration (users, pools, remotes, jobs and schedules, with their ids) from a configuration backup into this Cairn, which must be empty (no job, no restore point: CONFLICT otherwise). Names already taken here are kept as they are. Secrets come back only from a backup on an encrypted remote; needsSecrets names what to fix otherwise.",
  })
  async restoreConfiguration(
    @Arg("input", () => ConfigurationRestoreInput) input: ConfigurationRestoreInput,
    @Ctx() { services, principal }: GraphQLContext,
  ): Promise<ConfigurationRestore> {
    return services.metadataBackups.restoreConfiguration(input, principal);
  }
}
