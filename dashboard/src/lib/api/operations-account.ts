/**
 * The operations of your own account: your password, your sign-in sessions and your API tokens. One constant per
 * operation, named after it; validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf } from "./graphql.js";

/** Needs the current password (wrong: BAD_USER_INPUT on `currentPassword`); the other sessions are signed out. */
export const ChangePasswordMutation = graphql(`
  mutation ChangePassword($currentPassword: String!, $newPassword: String!) {
    changePassword(currentPassword: $currentPassword, newPassword: $newPassword)
  }
`);

/** Your live sessions; `current` marks the one of this browser. */
export const SessionsQuery = graphql(`
  query Sessions {
    sessions {
      id
      current
      createdAt
      expiresAt
      lastUsedAt
      createdFrom
    }
  }
`);

export type SessionRecord = ResultOf<typeof SessionsQuery>["sessions"][number];

/** Ends one session; ending the current one signs this browser out. */
export const RevokeSessionMutation = graphql(`
  mutation RevokeSession($id: ID!) {
    revokeSession(id: $id)
  }
`);

/** One user's API tokens, revoked ones included (an ADMIN without `userId` would get everyone's). */
export const ApiTokensQuery = graphql(`
  query ApiTokens($userId: ID) {
    apiTokens(userId: $userId) {
      id
      name
      role
      createdAt
      revokedAt
      lastUsedAt
      createdFrom
    }
  }
`);

export type ApiTokenRecord = ResultOf<typeof ApiTokensQuery>["apiTokens"][number];

/** Creates a token at or below your role; its secret is in this answer only. Needs a session, not a token. */
export const CreateApiTokenMutation = graphql(`
  mutation CreateApiToken($name: String!, $role: Role!) {
    createApiToken(name: $name, role: $role) {
      id
      name
      role
      token
    }
  }
`);

export type ApiTokenSecret = ResultOf<typeof CreateApiTokenMutation>["createApiToken"];

export const RevokeApiTokenMutation = graphql(`
  mutation RevokeApiToken($id: ID!) {
    revokeApiToken(id: $id)
  }
`);
