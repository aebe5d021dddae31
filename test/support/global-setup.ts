/**
 * One PostgreSQL for the whole test run: the server at DATABASE_URL when set, else an embedded one in a temp folder
 * (fsync off). A template database holding every migration is made once; each test file clones it (`createTestDatabase`),
 * so files are independent and never migrate twice.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres } from "../../server/db/embedded-postgres.js";
import { migrate } from "../../server/db/migrate.js";

export const TEMPLATE_DATABASE = "cairn_test_template";

declare module "vitest" {
  export interface ProvidedContext {
    postgresAdminUrl: string;
  }
}

export default async function setup(project: TestProject) {
  let adminUrl = process.env.DATABASE_URL;
  let stop = async () => {};
  if (!adminUrl) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-test-pg-"));
    await fs.chmod(dir, 0o755);
    const postgres = await startEmbeddedPostgres({
      dataDir: path.join(dir, "data"),
      port: 30000 + Math.floor(Math.random() * 20000),
      password: "test",
      settings: { fsync: "off", synchronous_commit: "off", full_page_writes: "off", max_connections: "300" },
    });
    adminUrl = postgres.connectionString("postgres");
    stop = async () => {
      await postgres.stop();
      await fs.rm(dir, { recursive: true, force: true });
    };
  }
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DATABASE} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${TEMPLATE_DATABASE}`);
  await admin.end();
  await migrate(withDatabase(adminUrl, TEMPLATE_DATABASE));
  project.provide("postgresAdminUrl", adminUrl);
  return stop;
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
