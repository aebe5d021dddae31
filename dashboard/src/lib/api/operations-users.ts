/**
 * The operations of user management (ADMIN only): list, create, change role, disable or enable, reset a password,
 * delete. One constant per operation, named after it; validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf, type VariablesOf } from "./graphql.js";

const UserFields = graphql(`
  fragment UserFields on User {
    id
    username
    role
    disabled
    createdAt
  }
`);

/** Every user, by name. */
export const UsersQuery = graphql(
  `
    query Users {
      users {
        ...UserFields
      }
    }
  `,
  [UserFields],
);

export type UserRecord = ResultOf<typeof UsersQuery>["users"][number];
export type CreateUserInput = VariablesOf<typeof CreateUserMutation>["input"];

/** A taken name (without regard to case) is CONFLICT with `extensions.field` `input.username`. */
export const CreateUserMutation = graphql(
  `
    mutation CreateUser($input: CreateUserInput!) {
      createUser(input: $input) {
        ...UserFields
      }
    }
  `,
  [UserFields],
);

/** Role and/or disabled; a field left out is kept. The last enabled ADMIN is refused with CONFLICT. */
export const UpdateUserMutation = graphql(
  `
    mutation UpdateUser($id: ID!, $input: UpdateUserInput!) {
      updateUser(id: $id, input: $input) {
        ...UserFields
      }
    }
  `,
  [UserFields],
);

export const DeleteUserMutation = graphql(`
  mutation DeleteUser($id: ID!) {
    deleteUser(id: $id)
  }
`);

/** Another user's password; revokes all of that user's sessions and tokens. */
export const ResetUserPasswordMutation = graphql(`
  mutation ResetUserPassword($id: ID!, $password: String!) {
    resetUserPassword(id: $id, password: $password)
  }
`);
