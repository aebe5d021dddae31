/**
 * The operations of pools (the XCP-ng and XenServer pools Cairn backs up): list, one pool's page, connect, change, trust a
 * replaced certificate and remove.
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

/** One pool's page: its connection, hosts, SRs with their space, VMs and the latest changes of its connection. */
export const PoolPageQuery = graphql(`
  query PoolPage($id: ID!) {
    pool(id: $id) {
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
        master
        version
      }
      srs {
        uuid
        name
        type
        contentType
        sizeBytes
        freeBytes
        shared
      }
      vms {
        uuid
        name
        powerState
        role
      }
      connectionHistory {
        at
        status
        reason
      }
    }
  }
`);

export type PoolPageRecord = ResultOf<typeof PoolPageQuery>["pool"];

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
