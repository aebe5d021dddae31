/**
 * The operations of runs: a page of runs, one run with its task tree, their live changes, and stopping a run.
 * One constant per operation, named after it; validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf, type VariablesOf } from "./graphql.js";

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
    bytesPerSecond
    etaSeconds
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
    bytesPerSecond
    etaSeconds
    vmUuid
  }
`);

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
        restore {
          restorePointId
          restorePoint {
            id
            vmName
            timestamp
            run {
              id
            }
          }
          poolName
          srUuid
          srName
          vmUuid
          vmName
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
