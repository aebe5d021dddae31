/**
 * The operations of remotes (where backups are stored): list, add, change, remove and test. One constant per
 * operation, named after it; validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf, type VariablesOf } from "./graphql.js";

const RemoteFields = graphql(`
  fragment RemoteFields on Remote {
    id
    name
    kind
    location
    options
    username
    enabled
    encrypted
    immutabilityDays
    status
    freeBytes
    usedBytes
    backupBytes
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
