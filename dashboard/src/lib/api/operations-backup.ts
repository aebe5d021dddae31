/**
 * The operations of the backup pages (overview, logs, jobs, remotes, pools, restore), one constant per operation,
 * named after it; validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf, type VariablesOf } from "./graphql.js";

const ScheduleFields = graphql(`
  fragment ScheduleFields on Schedule {
    id
    name
    cron
    timezone
    enabled
    nextRunAt
    exportRetention
    copyRetention
    snapshotRetention
  }
`);

const RunSummaryFields = graphql(`
  fragment RunSummaryFields on Run {
    id
    kind
    status
    trigger
    createdAt
    startedAt
    endedAt
    durationSeconds
    error
    progress
    transferredBytes
    vmsTotal
    vmsSucceeded
    vmsFailed
    job {
      id
      name
    }
  }
`);

const TaskFields = graphql(`
  fragment TaskFields on Task {
    id
    runId
    parentId
    kind
    name
    status
    progress
    startedAt
    endedAt
    message
    warnings
    sizeBytes
    vmUuid
  }
`);

/** Every job with its schedules and its last ten runs, for the overview and the jobs list. */
export const JobsOverviewQuery = graphql(
  `
    query JobsOverview {
      jobs {
        id
        name
        mode
        enabled
        schedules {
          ...ScheduleFields
        }
        runs(first: 10) {
          totalCount
          nodes {
            id
            status
            createdAt
          }
        }
      }
    }
  `,
  [ScheduleFields],
);

export type JobOverview = ResultOf<typeof JobsOverviewQuery>["jobs"][number];

/** The overview's protection table and chart. */
export const OverviewStatsQuery = graphql(`
  query OverviewStats($from: DateTime!, $to: DateTime!) {
    backupStats(from: $from, to: $to, groupBy: DAY) {
      key
      label
      runs
      succeeded
      failed
      bytes
      durationSeconds
    }
    vmProtection(olderThanHours: 24) {
      protected
      ageHours
      vm {
        uuid
        name
        powerState
        tags
        pool {
          id
          name
        }
      }
      lastGoodRestorePoint {
        id
        timestamp
      }
    }
  }
`);

export type StatsBucket = ResultOf<typeof OverviewStatsQuery>["backupStats"][number];

/** A page of runs, newest first. */
export const RunsQuery = graphql(
  `
    query Runs($filter: RunFilter, $first: Int, $after: String) {
      runs(filter: $filter, first: $first, after: $after) {
        totalCount
        pageInfo {
          hasNextPage
          endCursor
        }
        nodes {
          ...RunSummaryFields
        }
      }
    }
  `,
  [RunSummaryFields],
);

export type RunSummary = ResultOf<typeof RunsQuery>["runs"]["nodes"][number];
export type RunFilterInput = NonNullable<VariablesOf<typeof RunsQuery>["filter"]>;

/** The job names for the logs' filter. */
export const JobNamesQuery = graphql(`
  query JobNames {
    jobs {
      id
      name
    }
  }
`);

/** One run with its whole task tree. */
export const RunQuery = graphql(
  `
    query Run($id: ID!) {
      run(id: $id) {
        ...RunSummaryFields
        vmUuids
        schedule {
          id
          name
        }
        tasks {
          ...TaskFields
        }
      }
    }
  `,
  [RunSummaryFields, TaskFields],
);

export type RunDetail = NonNullable<ResultOf<typeof RunQuery>["run"]>;
export type TaskRecord = RunDetail["tasks"][number];

/** Status and progress changes of one job's runs (or of every run). */
export const RunUpdatedSubscription = graphql(
  `
    subscription RunUpdated($jobId: ID) {
      runUpdated(jobId: $jobId) {
        ...RunSummaryFields
      }
    }
  `,
  [RunSummaryFields],
);

/** Every change of a task of one run. */
export const TaskUpdatedSubscription = graphql(
  `
    subscription TaskUpdated($runId: ID!) {
      taskUpdated(runId: $runId) {
        ...TaskFields
      }
    }
  `,
  [TaskFields],
);

/** Stops a run. */
export const CancelRunMutation = graphql(`
  mutation CancelRun($id: ID!) {
    cancelRun(id: $id) {
      id
      status
    }
  }
`);

const JobFields = graphql(
  `
    fragment JobFields on Job {
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
      remotes {
        id
        name
      }
      srUuids
      settings {
        compression
        concurrency
        timeoutSeconds
        fullInterval
        retries
        quiesce
        healthCheckSrUuid
        reportWhen
        reportEmails
        reportWebhookUrl
        verifyOlderThanDays
      }
      schedules {
        ...ScheduleFields
      }
      lastRun {
        id
        status
        createdAt
      }
    }
  `,
  [ScheduleFields],
);

/** One job with every setting, for the edit form. */
export const JobQuery = graphql(
  `
    query Job($id: ID!) {
      job(id: $id) {
        ...JobFields
      }
    }
  `,
  [JobFields],
);

export type JobDetail = NonNullable<ResultOf<typeof JobQuery>["job"]>;
export type JobInput = VariablesOf<typeof CreateJobMutation>["input"];
export type ScheduleInput = NonNullable<JobInput["schedules"]>[number];
export type BackupMode = JobInput["mode"];

/** What the job form picks from: VMs, remotes, pools and their SRs. */
export const JobFormChoicesQuery = graphql(`
  query JobFormChoices {
    vms {
      uuid
      name
      powerState
      tags
      pool {
        id
        name
      }
    }
    remotes {
      id
      name
      kind
      enabled
    }
    pools {
      id
      name
      status
    }
    srs {
      uuid
      name
      type
      contentType
      freeBytes
      sizeBytes
      pool {
        id
        name
      }
    }
  }
`);

export type JobFormChoices = ResultOf<typeof JobFormChoicesQuery>;
export type VmChoice = JobFormChoices["vms"][number];

export const CreateJobMutation = graphql(
  `
    mutation CreateJob($input: JobInput!) {
      createJob(input: $input) {
        ...JobFields
      }
    }
  `,
  [JobFields],
);

export const UpdateJobMutation = graphql(
  `
    mutation UpdateJob($id: ID!, $input: JobInput!) {
      updateJob(id: $id, input: $input) {
        ...JobFields
      }
    }
  `,
  [JobFields],
);

export const RemoveJobMutation = graphql(`
  mutation RemoveJob($id: ID!) {
    removeJob(id: $id)
  }
`);

/** Starts a run now; answers with the run (PENDING or RUNNING), CONFLICT when the job is running. */
export const RunJobMutation = graphql(`
  mutation RunJob($id: ID!, $scheduleId: ID) {
    runJob(id: $id, scheduleId: $scheduleId) {
      id
      status
    }
  }
`);

const RemoteFields = graphql(`
  fragment RemoteFields on Remote {
    id
    name
    kind
    location
    options
    username
    enabled
    status
    freeBytes
    usedBytes
    restorePointCount
    lastTest {
      ok
      writeBytesPerSecond
      readBytesPerSecond
      error
      testedAt
    }
  }
`);

export const RemotesQuery = graphql(
  `
    query Remotes {
      remotes {
        ...RemoteFields
      }
    }
  `,
  [RemoteFields],
);

export type RemoteRecord = ResultOf<typeof RemotesQuery>["remotes"][number];
export type RemoteInput = VariablesOf<typeof CreateRemoteMutation>["input"];

export const CreateRemoteMutation = graphql(
  `
    mutation CreateRemote($input: RemoteInput!) {
      createRemote(input: $input) {
        ...RemoteFields
      }
    }
  `,
  [RemoteFields],
);

export const UpdateRemoteMutation = graphql(
  `
    mutation UpdateRemote($id: ID!, $input: RemoteInput!) {
      updateRemote(id: $id, input: $input) {
        ...RemoteFields
      }
    }
  `,
  [RemoteFields],
);

export const RemoveRemoteMutation = graphql(`
  mutation RemoveRemote($id: ID!) {
    removeRemote(id: $id)
  }
`);

/** Writes, reads back and deletes a 16 MiB file on the remote; answers the measured speeds. */
export const TestRemoteMutation = graphql(`
  mutation TestRemote($id: ID!) {
    testRemote(id: $id) {
      ok
      writeBytesPerSecond
      readBytesPerSecond
      error
      testedAt
    }
  }
`);

export const PoolsQuery = graphql(`
  query Pools {
    pools {
      id
      name
      url
      username
      allowUnauthorized
      status
      lastError
      connectedAt
      hosts {
        uuid
        name
        address
      }
      srs {
        uuid
      }
      vms {
        uuid
      }
    }
  }
`);

export type PoolRecord = ResultOf<typeof PoolsQuery>["pools"][number];
export type PoolInput = VariablesOf<typeof ConnectPoolMutation>["input"];

export const ConnectPoolMutation = graphql(`
  mutation ConnectPool($input: PoolInput!) {
    connectPool(input: $input) {
      id
      status
    }
  }
`);

export const UpdatePoolMutation = graphql(`
  mutation UpdatePool($id: ID!, $input: PoolInput!) {
    updatePool(id: $id, input: $input) {
      id
      status
    }
  }
`);

export const RemovePoolMutation = graphql(`
  mutation RemovePool($id: ID!) {
    removePool(id: $id)
  }
`);

/** The restore page's first steps: the remotes, and the pools with their SRs as targets. */
export const RestoreChoicesQuery = graphql(`
  query RestoreChoices {
    remotes {
      id
      name
      kind
      restorePointCount
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

/** Restore points of a remote (optionally of one VM), newest first. */
export const RestorePointsQuery = graphql(`
  query RestorePoints($filter: RestorePointFilter, $first: Int, $after: String) {
    restorePoints(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo {
        hasNextPage
        endCursor
      }
      nodes {
        id
        kind
        vmUuid
        vmName
        timestamp
        sizeBytes
        quiesced
        compression
        chainLength
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
      }
    }
  }
`);

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
