/**
 * The operations of the overview's figures: backups per day and which VMs have a recent good restore point.
 * Validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql } from "./graphql.js";

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
