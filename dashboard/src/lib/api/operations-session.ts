/**
 * The operations of the session: signing in, who the token belongs to, signing out. One constant per operation, named
 * after it; validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf } from "./graphql.js";

/** Exchanges a username and password for a bearer token. Fails with UNAUTHENTICATED on bad credentials. */
export const LoginMutation = graphql(`
  mutation Login($username: String!, $password: String!) {
    login(username: $username, password: $password) {
      token
      user {
        id
        username
        role
      }
    }
  }
`);

/** The user the token belongs to; `null` (or an UNAUTHENTICATED error) when the token is not valid any more. */
export const MeQuery = graphql(`
  query Me {
    me {
      id
      username
      role
    }
  }
`);

/** What a successful sign-in returns: the token to send from now on and who it belongs to. */
export type AuthPayload = ResultOf<typeof LoginMutation>["login"];

/** The signed-in user as the dashboard shows it. */
export type SignedInUser = AuthPayload["user"];

/** Ends the session on the server (the token stops working everywhere, not only in this browser). */
export const LogoutMutation = graphql(`
  mutation Logout {
    logout
  }
`);
