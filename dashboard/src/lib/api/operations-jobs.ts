/**
 * The operations of backup jobs: the list (with schedules and last runs), one job with every setting, what the job
 * form picks from, and creating, changing, removing and running a job. One constant per operation, named after it;
 * validated against `schema.graphql` by `scripts/validate-operations.ts`.
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
    gfsDays
    gfsWeeks
    gfsMonths
    gfsYears
    weekStart
    dayStartHour
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
      sourceRemote {
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
        cbtNbd
        nbdConnections
        healthCheckSrUuid
        reportWhen
        reportEmails
        reportWebhookUrl
        verifyOlderThanDays
        includeConfiguration
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

/** The job names for the logs' filter. */
export const JobNamesQuery = graphql(`
  query JobNames {
    jobs {
      id
      name
    }
  }
`);

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

/**
 * What the next run of a schedule keeps and removes of its restore points on remotes, and why each is kept (FULL, DELTA),
 * newest first; decided from the saved settings.
 */
export const RetentionPreviewQuery = graphql(`
  query RetentionPreview($jobId: ID!, $scheduleId: ID!) {
    retentionPreview(jobId: $jobId, scheduleId: $scheduleId) {
      keep
      reasons
      restorePoint {
        id
        timestamp
        vmUuid
        vmName
        remote {
          id
          name
        }
      }
    }
  }
`);

export type RetentionDecisionRecord = ResultOf<typeof RetentionPreviewQuery>["retentionPreview"][number];
