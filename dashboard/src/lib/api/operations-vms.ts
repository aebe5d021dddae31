/**
 * The operations of the VMs pages: every known VM with its protection (its newest good restore point, the target of the
 * schedules covering it, the jobs selecting it, its replicas), one VM with all its restore points (remotes, snapshots,
 * replicas), and what restoring one of them needs. One constant per operation, named after it; validated against
 * `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf } from "./graphql.js";

/** What a job selects and whether it runs on a schedule: enough to tell which jobs cover a VM (vm-selection.ts rules). */
const CoveringJobFields = graphql(`
  fragment CoveringJobFields on Job {
    id
    name
    mode
    enabled
    selection {
      vmUuids
      smart {
        poolIds
        tagsAll
        tagsAny
        tagsNone
        powerStates
      }
    }
    schedules {
      id
      enabled
    }
  }
`);

/**
 * The VMs page: every VM Cairn knows (a connected pool's, or one last seen on a pool not connected now) with its newest
 * good restore point, the RPO target of its schedules (rpoReport over a short period: only the target and current gap
 * count here), the jobs, the VMs the pools show now (to tell a VM gone from its pool), and the replicas kept.
 */
export const VmsInventoryQuery = graphql(
  `
    query VmsInventory($rpoFrom: DateTime) {
      pools {
        id
        name
        status
        srs {
          uuid
          name
        }
      }
      vms {
        uuid
      }
      vmProtection {
        ageHours
        vm {
          uuid
          name
          powerState
          tags
          role
          pool {
            id
            name
          }
        }
        lastGoodRestorePoint {
          id
          timestamp
          kind
          sr
          remote {
            id
            name
          }
        }
      }
      rpoReport(from: $rpoFrom) {
        vm {
          uuid
        }
        targetSeconds
        graceSeconds
      }
      jobs {
        ...CoveringJobFields
      }
      replicas: restorePoints(filter: { kind: REPLICA }, first: 500) {
        totalCount
        nodes {
          id
          vmUuid
          sr
        }
      }
    }
  `,
  [CoveringJobFields],
);

export type VmsInventory = ResultOf<typeof VmsInventoryQuery>;
export type CoveringJob = VmsInventory["jobs"][number];

/**
 * One VM as a pool shows it now (else as Cairn last saw it), with the RPO target of its schedules and its current gap.
 * NOT_FOUND when Cairn never saw the VM on a pool (its restore points may still exist: VmRestorePointsQuery).
 */
export const VmDetailQuery = graphql(`
  query VmDetail($vmUuid: String!, $rpoFrom: DateTime) {
    vmRpo(vmUuid: $vmUuid, from: $rpoFrom) {
      vm {
        uuid
        name
        powerState
        tags
        role
        pool {
          id
          name
          status
        }
      }
      targetSeconds
      graceSeconds
      currentGapSeconds
    }
  }
`);

export type VmDetail = ResultOf<typeof VmDetailQuery>["vmRpo"];

/** Every restore point of one VM on every remote, SR and pool, newest first, with what names their places and jobs. */
export const VmRestorePointsQuery = graphql(
  `
    query VmRestorePoints($vmUuid: String!, $first: Int) {
      restorePoints(filter: { vmUuid: $vmUuid }, first: $first) {
        totalCount
        nodes {
          id
          kind
          vmName
          timestamp
          sizeBytes
          sr
          chainLength
          quiesced
          remote {
            id
            name
          }
          job {
            id
            name
          }
          verification {
            status
            checkedAt
            error
          }
          integrity {
            status
            verifiedAt
          }
          immutableUntil
        }
      }
      pools {
        id
        name
        status
        srs {
          uuid
          name
        }
      }
      vms(search: $vmUuid) {
        uuid
      }
      jobs {
        ...CoveringJobFields
      }
    }
  `,
  [CoveringJobFields],
);

export type VmRestorePoint = ResultOf<typeof VmRestorePointsQuery>["restorePoints"]["nodes"][number];

/** Restoring one restore point from the VM page: the point, and the pools with their SRs as targets. */
export const VmRestoreChoicesQuery = graphql(`
  query VmRestoreChoices($id: ID!) {
    restorePoint(id: $id) {
      id
      kind
      vmUuid
      vmName
      timestamp
      sizeBytes
      sr
      chainLength
      remote {
        id
        name
      }
      disks {
        id
        name
        virtualSize
      }
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
      }
    }
  }
`);

/**
 * What deleting one restore point would do, asked when a user chooses Delete (the server reads the remote's VM folder or
 * looks at the pool for it, so the list does not ask it for every point).
 */
export const RestorePointRemovalQuery = graphql(`
  query RestorePointRemoval($id: ID!) {
    restorePoint(id: $id) {
      id
      removal {
        action
        description
        refusal
        freedBytes
        dependents
        nextBackupAt
        poolName
        nextRestorePoint {
          id
          timestamp
        }
        merges {
          disk
          estimatedBytes
        }
      }
    }
  }
`);

export type RestorePointRemoval = NonNullable<ResultOf<typeof RestorePointRemovalQuery>["restorePoint"]>["removal"];

/** Deletes a restore point and what it stands for (ADMIN). */
export const RemoveRestorePointMutation = graphql(`
  mutation RemoveRestorePoint($id: ID!) {
    removeRestorePoint(id: $id)
  }
`);

/** Starts a health check of a restore point now (OPERATOR); answers with its HEALTH_CHECK run. */
export const CheckRestorePointMutation = graphql(`
  mutation CheckRestorePoint($id: ID!) {
    checkRestorePoint(id: $id) {
      id
    }
  }
`);
