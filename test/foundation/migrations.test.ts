/**
 * The migrations in prisma/migrations give exactly prisma/schema.prisma. The oracle is Prisma's own schema engine (WASM,
 * scripts/schema-diff.ts): the SQL it writes for "empty database -> schema.prisma" is run on one empty database, the migrations
 * on another, and the two catalogs (tables, columns, indexes, constraints, enums) must be equal. Also: migrate() is
 * idempotent, safe to run concurrently, and refuses a migration file changed after it was applied.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MIGRATIONS_DIR, migrate, readMigrations } from "../../server/db/migrate.js";
import { SCHEMA_PATH, diffSchemas } from "../../scripts/schema-diff.js";
import { createEmptyDatabase, type TestDatabase } from "../support/database.js";

interface Catalog {
  tables: string[];
  columns: string[];
  indexes: string[];
  constraints: string[];
  enums: string[];
}

/** Everything about the public schema that a migration decides, as sorted lines (so a failure shows a readable diff). */
async function readCatalog(url: string): Promise<Catalog> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const lines = async (sql: string) => (await client.query<{ line: string }>(sql)).rows.map((row) => row.line).sort();
  try {
    return {
      tables: await lines(`
        SELECT table_name || ' ' || table_type AS line FROM information_schema.tables
        WHERE table_schema = 'public' AND table_name <> '_prisma_migrations'`),
      columns: await lines(`
        SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
               || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
               || CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END
               || CASE WHEN a.attgenerated <> '' THEN ' GENERATED ' || a.attgenerated::text ELSE '' END AS line
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relname <> '_prisma_migrations'`),
      indexes: await lines(`
        SELECT indexname || ': ' || indexdef AS line FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> '_prisma_migrations'`),
      // A constraint trigger (contype 't', migration run_task_messages) is a trigger, which Prisma's schema does not model.
      constraints: await lines(`
        SELECT conrelid::regclass::text || ' ' || conname || ': ' || pg_get_constraintdef(oid) AS line FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND conrelid <> 0 AND contype <> 't'
          AND (SELECT relname FROM pg_class WHERE oid = conrelid) <> '_prisma_migrations'`),
      enums: await lines(`
        SELECT t.typname || ': ' || string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder) AS line
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typnamespace = 'public'::regnamespace GROUP BY t.typname`),
    };
  } finally {
    await client.end();
  }
}

async function execute(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

describe("the migrations", () => {
  const databases: TestDatabase[] = [];
  const tempDirs: string[] = [];
  const emptyDatabase = async () => {
    const database = await createEmptyDatabase();
    databases.push(database);
    return database;
  };
  /** A copy of prisma/migrations that a test may alter. */
  const copyOfMigrations = async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-migrations-"));
    tempDirs.push(dir);
    await fs.cp(MIGRATIONS_DIR, dir, { recursive: true });
    return dir;
  };

  let migrated: TestDatabase;
  let appliedFirst: string[];
  beforeAll(async () => {
    migrated = await emptyDatabase();
    appliedFirst = await migrate(migrated.url);
  });
  afterAll(async () => {
    await Promise.all(databases.map((database) => database.drop()));
    await Promise.all(tempDirs.map((dir) => fs.rm(dir, { recursive: true, force: true })));
  });

  it("apply every migration folder, in order, to an empty database", async () => {
    const names = (await readMigrations()).map((migration) => migration.name);
    expect(names.length).toBeGreaterThan(0);
    expect(appliedFirst).toEqual(names);
  });

  it("give exactly the database Prisma's schema engine makes from prisma/schema.prisma", async () => {
    const schema = await fs.readFile(SCHEMA_PATH, "utf8");
    const reference = await emptyDatabase();
    const sql = await diffSchemas(reference.url, null, schema);
    expect(sql).toContain("CREATE TABLE");
    await execute(reference.url, sql);

    const [actual, expected] = await Promise.all([readCatalog(migrated.url), readCatalog(reference.url)]);
    expect(expected.tables.length).toBeGreaterThan(5);
    expect(expected.enums.length).toBeGreaterThan(3);
    // One assertion per part, so that a failure says which part differs.
    expect(actual.tables, "tables").toEqual(expected.tables);
    expect(actual.enums, "enums and their labels").toEqual(expected.enums);
    expect(actual.columns, "columns: type, nullability, default").toEqual(expected.columns);
    expect(actual.indexes, "indexes").toEqual(expected.indexes);
    expect(actual.constraints, "constraints").toEqual(expected.constraints);
    console.log(
      `catalog compared: ${actual.tables.length} tables, ${actual.columns.length} columns, ${actual.indexes.length} indexes, ` +
        `${actual.constraints.length} constraints, ${actual.enums.length} enums`,
    );
  });

  it("(self-check) the catalog comparison notices a missing index, a changed default and a new enum label", async () => {
    const database = await emptyDatabase();
    await migrate(database.url);
    const before = await readCatalog(database.url);
    await execute(
      database.url,
      `
      DROP INDEX "Run_status_idx";
      ALTER TABLE "Run" ALTER COLUMN "progress" SET DEFAULT 1;
      ALTER TYPE "RunStatus" ADD VALUE 'PAUSED';`,
    );
    const after = await readCatalog(database.url);
    expect(after.indexes).not.toEqual(before.indexes);
    expect(after.columns).not.toEqual(before.columns);
    expect(after.enums).not.toEqual(before.enums);
  });

  it("end with a snapshot of prisma/schema.prisma, so no migration is missing (run `npm run migration:create -- <name>`)", async () => {
    const last = (await readMigrations()).at(-1)!;
    const snapshot = await fs.readFile(path.join(MIGRATIONS_DIR, last.name, "schema.prisma"), "utf8");
    const current = await fs.readFile(SCHEMA_PATH, "utf8");
    expect(
      snapshot === current,
      `prisma/schema.prisma differs from prisma/migrations/${last.name}/schema.prisma: create a migration with npm run migration:create -- <name>`,
    ).toBe(true);
  });

  it("apply nothing the second time", async () => {
    expect(await migrate(migrated.url)).toEqual([]);
    const client = new pg.Client({ connectionString: migrated.url });
    await client.connect();
    const { rows } = await client.query(
      `SELECT migration_name, finished_at IS NOT NULL AS finished, applied_steps_count FROM "_prisma_migrations" ORDER BY migration_name`,
    );
    await client.end();
    expect(rows).toEqual(appliedFirst.map((name) => ({ migration_name: name, finished: true, applied_steps_count: 1 })));
  });

  it("apply each migration once when several processes start together", async () => {
    const database = await emptyDatabase();
    const results = await Promise.all([migrate(database.url), migrate(database.url), migrate(database.url)]);
    expect(results.flat().sort()).toEqual([...appliedFirst].sort());
  });

  it("apply only a newly added migration to a migrated database", async () => {
    const dir = await copyOfMigrations();
    const database = await emptyDatabase();
    await migrate(database.url, dir);
    const added = "99991231000000_add_a_note";
    await fs.mkdir(path.join(dir, added));
    await fs.writeFile(path.join(dir, added, "migration.sql"), `ALTER TABLE "Job" ADD COLUMN "note" TEXT;\n`);
    expect(await migrate(database.url, dir)).toEqual([added]);
  });

  it("refuse a migration file changed after it was applied, saying what to do", async () => {
    const dir = await copyOfMigrations();
    const database = await emptyDatabase();
    await migrate(database.url, dir);
    const first = (await readMigrations(dir))[0]!;
    await fs.appendFile(path.join(dir, first.name, "migration.sql"), "\n-- an edit after the fact\n");
    await expect(migrate(database.url, dir)).rejects.toThrow(
      `Migration ${first.name} was changed after it was applied (checksum differs). Restore the original file; ` +
        "changes to the schema go into a new migration (npm run migration:create -- <name>).",
    );
  });

  it("roll back a failing migration entirely and name it in the error", async () => {
    const dir = await copyOfMigrations();
    const database = await emptyDatabase();
    await migrate(database.url, dir);
    const broken = "99991231000000_broken";
    await fs.mkdir(path.join(dir, broken));
    await fs.writeFile(
      path.join(dir, broken, "migration.sql"),
      `CREATE TABLE "Half" (id int);\nALTER TABLE "NoSuchTable" ADD COLUMN x int;\n`,
    );
    await expect(migrate(database.url, dir)).rejects.toThrow(`Migration ${broken} failed: relation "NoSuchTable" does not exist`);
    const catalog = await readCatalog(database.url);
    expect(catalog.tables.some((line) => line.startsWith("Half "))).toBe(false);
    // Nothing half-recorded either: fixing the file lets the next start apply it.
    await fs.writeFile(path.join(dir, broken, "migration.sql"), `CREATE TABLE "Half" (id int);\n`);
    expect(await migrate(database.url, dir)).toEqual([broken]);
  });
});
