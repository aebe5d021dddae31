/**
 * The operations of metadata backups (METADATA jobs): the list, a remote's re-scan, a pool's metadata restore, and the
 * disaster-recovery drill (the configuration backups of a remote not registered yet, and their restore). One constant per
 * operation, named after it; validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf, type VariablesOf } from "./graphql.js";

export const MetadataBackupsQuery = graphql(`
  query MetadataBackups($remoteId: ID, $poolId: ID, $kind: MetadataBackupKind) {
    metadataBackups(remoteId: $remoteId, poolId: $poolId, kind: $kind) {
      id
      kind
      poolId
      poolUuid
      poolName
      remoteId
      remoteName
      path
      timestamp
      sizeBytes
      secretsIncluded
      jobId
    }
    pools {
      id
      name
      status
    }
    remotes {
      id
      name
    }
  }
`);

export type MetadataBackupRecord = ResultOf<typeof MetadataBackupsQuery>["metadataBackups"][number];

export const ScanMetadataBackupsMutation = graphql(`
  mutation ScanMetadataBackups($remoteId: ID!) {
    scanMetadataBackups(remoteId: $remoteId)
  }
`);

export const RestorePoolMetadataMutation = graphql(`
  mutation RestorePoolMetadata($id: ID!) {
    restorePoolMetadata(id: $id) {
      poolName
      message
    }
  }
`);

export const ConfigurationBackupsQuery = graphql(`
  query ConfigurationBackups($remote: DrillRemoteInput!) {
    configurationBackups(remote: $remote) {
      path
      timestamp
      sizeBytes
      secretsIncluded
      jobName
    }
  }
`);

export type DrillRemote = VariablesOf<typeof ConfigurationBackupsQuery>["remote"];
export type ConfigurationBackupRecord = ResultOf<typeof ConfigurationBackupsQuery>["configurationBackups"][number];

export const RestoreConfigurationMutation = graphql(`
  mutation RestoreConfiguration($input: ConfigurationRestoreInput!) {
    restoreConfiguration(input: $input) {
      message
      users
      pools
      remotes
      jobs
      schedules
      kept
      needsSecrets
    }
  }
`);

export type ConfigurationRestoreRecord = ResultOf<typeof RestoreConfigurationMutation>["restoreConfiguration"];
