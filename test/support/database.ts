/** A fresh database per test file, cloned from the migrated template the global setup made. */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";
import { TEMPLATE_DATABASE, withDatabase } from "./global-setup.js";

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  return createDatabase("cairn_test", `TEMPLATE ${TEMPLATE_DATABASE}`);
}

/** An empty database (no migrations), for the migration tests. */
export async function createEmptyDatabase(): Promise<TestDatabase> {
  return createDatabase("cairn_empty", "");
}

async function createDatabase(prefix: string, options: string): Promise<TestDatabase> {
  const adminUrl = inject("postgresAdminUrl");
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  const run = async (sql: string) => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await run(`CREATE DATABASE ${name} ${options}`);
  return { url: withDatabase(adminUrl, name), name, drop: () => run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}
