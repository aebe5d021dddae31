/**
 * The operations of restore: what to restore from and onto (remotes, restore points, pools and SRs), restoring a whole
 * VM, and file-level restore (a delta restore point's files: browse, then download). One constant per operation,
 * named after it; validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf, type VariablesOf } from "./graphql.js";

/**
 * The restore page's first steps: the sources (each remote, and the snapshots and replicas kept on the pools: only their
 * counts here), and the pools with their SRs as targets.
 */
export const RestoreChoicesQuery = graphql(`
  query RestoreChoices {
    remotes {
      id
      name
      kind
      restorePointCount
    }
    snapshots: restorePoints(filter: { kind: SNAPSHOT }, first: 0) {
      totalCount
    }
    replicas: restorePoints(filter: { kind: REPLICA }, first: 0) {
      totalCount
    }
    pools {
      id
      name
      status
      srs {
        uuid
        name
        type
        contentType
        freeBytes
        sizeBytes
      }
    }
  }
`);

/** What the restore page shows of a restore point, and what restoring it needs. */
const RestorePointFields = graphql(`
  fragment RestorePointFields on RestorePoint {
    id
    kind
    vmUuid
    vmName
    timestamp
    sizeBytes
    quiesced
    compression
    chainLength
    sr
    remote {
      id
      name
    }
    job {
      id
      name
    }
    disks {
      id
      name
      virtualSize
    }
    verification {
      status
      checkedAt
      error
    }
    immutableUntil
  }
`);

/** Restore points of a remote (optionally of one VM), newest first. */
export const RestorePointsQuery = graphql(
  `
    query RestorePoints($filter: RestorePointFilter, $first: Int, $after: String) {
      restorePoints(filter: $filter, first: $first, after: $after) {
        totalCount
        pageInfo {
          hasNextPage
          endCursor
        }
        nodes {
          ...RestorePointFields
        }
      }
    }
  `,
  [RestorePointFields],
);

/**
 * The snapshots and replicas, which live on the pools' SRs rather than on a remote (the filter takes one kind: two lists,
 * each newest first).
 */
export const PoolRestorePointsQuery = graphql(
  `
    query PoolRestorePoints($first: Int) {
      snapshots: restorePoints(filter: { kind: SNAPSHOT }, first: $first) {
        totalCount
        nodes {
          ...RestorePointFields
        }
      }
      replicas: restorePoints(filter: { kind: REPLICA }, first: $first) {
        totalCount
        nodes {
          ...RestorePointFields
        }
      }
    }
  `,
  [RestorePointFields],
);

/** One restore point by id (a link to /restore?point=<id>); NOT_FOUND once removed. */
export const RestorePointQuery = graphql(
  `
    query RestorePoint($id: ID!) {
      restorePoint(id: $id) {
        ...RestorePointFields
      }
    }
  `,
  [RestorePointFields],
);

export type RestorePointRecord = ResultOf<typeof RestorePointsQuery>["restorePoints"]["nodes"][number];

/** Restores a VM as a new VM; answers at once with the restore's run. */
export const RestoreVmMutation = graphql(`
  mutation RestoreVm($input: RestoreInput!) {
    restoreVm(input: $input) {
      id
      status
    }
  }
`);

/**
 * Lists a folder of a disk of a VHD_CHAIN restore point. `disk` is an index into `RestorePoint.disks`; `partition`
 * null is the first readable partition (or the whole disk without a partition table), 0 the whole disk, 1 the first.
 * BAD_USER_INPUT for an XVA point (its message explains that a delta backup is needed), a bad disk or partition (the
 * message lists the partitions and why each cannot be read); NOT_FOUND for a missing path.
 */
export const BrowseRestorePointQuery = graphql(`
  query BrowseRestorePoint($id: ID!, $disk: Int!, $partition: Int, $path: String!) {
    browseRestorePoint(id: $id, disk: $disk, partition: $partition, path: $path) {
      name
      path
      type
      size
      modifiedAt
    }
  }
`);

export type FileEntryRecord = ResultOf<typeof BrowseRestorePointQuery>["browseRestorePoint"][number];

/**
 * The partitions of a disk of a VHD_CHAIN restore point (the whole disk alone, number 0, when it has no table), each with
 * its size, file system, whether it is the automatic choice, and why it cannot be browsed (`reason`, null when it can).
 * BAD_USER_INPUT for an XVA point or a bad disk, as browseRestorePoint.
 */
export const RestorePointPartitionsQuery = graphql(`
  query RestorePointPartitions($id: ID!, $disk: Int!) {
    restorePointPartitions(id: $id, disk: $disk) {
      number
      name
      size
      type
      fileSystem
      automatic
      reason
    }
  }
`);

export type DiskPartitionRecord = ResultOf<typeof RestorePointPartitionsQuery>["restorePointPartitions"][number];

/** Prepares an archive of files and folders; `url` is `/download/<token>` on this server, single use, valid 5 minutes. */
export const RestoreFilesMutation = graphql(`
  mutation RestoreFiles($input: FileRestoreInput!) {
    restoreFiles(input: $input) {
      url
      expiresAt
    }
  }
`);

export type ArchiveFormat = NonNullable<VariablesOf<typeof RestoreFilesMutation>["input"]["format"]>;
