/**
 * The operations of pools (the XCP-ng and XenServer pools Cairn backs up): list, connect, change, trust a replaced
 * certificate and remove.
 * One constant per operation, named after it; validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf } from "./graphql.js";

export const PoolsQuery = graphql(`
  query Pools {
    pools {
      id
      name
      url
      username
      allowUnauthorized
      tlsFingerprint
      presentedFingerprint
      status
      lastError
      warning
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

export const TrustPoolCertificateMutation = graphql(`
  mutation TrustPoolCertificate($id: ID!, $fingerprint: String!) {
    trustPoolCertificate(id: $id, fingerprint: $fingerprint) {
      id
      status
      tlsFingerprint
      lastError
    }
  }
`);

export const RemovePoolMutation = graphql(`
  mutation RemovePool($id: ID!) {
    removePool(id: $id)
  }
`);
