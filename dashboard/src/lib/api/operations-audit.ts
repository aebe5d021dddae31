/**
 * The audit log (ADMIN only): every mutation, newest first, filtered and paged. Validated against `schema.graphql` by
 * `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf, type VariablesOf } from "./graphql.js";

export const AuditLogQuery = graphql(`
  query AuditLog($filter: AuditLogFilter, $first: Int, $after: String) {
    auditLog(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo {
        hasNextPage
        endCursor
      }
      nodes {
        id
        at
        userId
        username
        tokenId
        tokenKind
        tokenName
        clientAddress
        transport
        action
        objectType
        objectId
        objectName
        success
        errorCode
        message
      }
    }
  }
`);

export type AuditEntryRecord = ResultOf<typeof AuditLogQuery>["auditLog"]["nodes"][number];
export type AuditLogFilterInput = NonNullable<VariablesOf<typeof AuditLogQuery>["filter"]>;
