/**
 * The operations of the overview's figures (backups per day, which VMs have a recent good restore point), of the Reports
 * page (storage trend, RPO) and of the run history export.
 * Validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql } from "./graphql.js";

/** The overview's protection table and chart, and the pools that need attention. */
export const OverviewStatsQuery = graphql(`
  query OverviewStats($from: DateTime!, $to: DateTime!, $timeZone: String) {
    pools {
      id
      name
      status
      lastError
      presentedFingerprint
    }
    backupStats(from: $from, to: $to, groupBy: DAY, timeZone: $timeZone) {
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
        role
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

/** The Reports page: bytes held per remote and per VM over time, and each VM's RPO against its schedules' target. */
export const ReportsQuery = graphql(`
  query Reports($from: DateTime!, $to: DateTime!, $timeZone: String, $rpoFrom: DateTime!) {
    byRemote: storageTrend(from: $from, to: $to, groupBy: REMOTE, interval: DAY, timeZone: $timeZone) {
      key
      label
      points {
        bucket
        at
        bytes
        restorePoints
      }
    }
    byVm: storageTrend(from: $from, to: $to, groupBy: VM, interval: DAY, timeZone: $timeZone) {
      key
      label
      points {
        bucket
        at
        bytes
        restorePoints
      }
    }
    rpoReport(from: $rpoFrom, to: $to) {
      vm {
        uuid
        name
        tags
        pool {
          id
          name
        }
      }
      targetSeconds
      graceSeconds
      maxGapSeconds
      currentGapSeconds
      restorePoints
      goodRestorePoints
      met
    }
  }
`);

/** The Logs page's export buttons: a single-use link to the filtered run history. */
export const ExportRunsMutation = graphql(`
  mutation ExportRuns($filter: RunFilter, $format: ExportFormat!) {
    exportRuns(filter: $filter, format: $format) {
      url
      expiresAt
    }
  }
`);
