/** Assertions shared by the API tests: the error a GraphQL answer carries, and a database client for the file's server. */
import { expect } from "vitest";
import { createPrismaClient, type Db } from "../../server/db/prisma.js";
import type { GraphQLResult, TestCairn } from "../support/cairn-server.js";

type ApiError = NonNullable<GraphQLResult<unknown>["errors"]>[number];

/** Asserts that the answer failed with exactly one error of this code (and field, when given), and returns that error. */
export function expectError(result: GraphQLResult<unknown>, code: string, field?: string): ApiError {
  expect(result.errors, `expected a ${code} error, got ${JSON.stringify(result)}`).toBeDefined();
  expect(result.errors).toHaveLength(1);
  const [error] = result.errors!;
  expect(error.extensions?.code, JSON.stringify(error)).toBe(code);
  if (field !== undefined) expect(error.extensions?.field, JSON.stringify(error)).toBe(field);
  return error;
}

/** Asserts that the answer has no error and returns its data. */
export function expectData<T>(result: GraphQLResult<T>): T {
  expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
  return result.data as T;
}

/** A Prisma client on the server's own database; disconnect it in afterAll. */
export function openDatabase(server: TestCairn): Db {
  return createPrismaClient(server.database.url);
}
