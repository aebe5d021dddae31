/**
 * The database Cairn runs on: the server at DATABASE_URL, or an embedded PostgreSQL in DATA_DIR/pg. Pending migrations are
 * applied before anything else touches it.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { randomBytes } from "node:crypto";
import type { Config } from "../config.js";
import type { Logger } from "../log.js";
import { superviseDatabase, type DatabaseAvailability } from "./database-supervisor.js";
import { startEmbeddedPostgres, type EmbeddedPostgresOptions, type RunningPostgres } from "./embedded-postgres.js";
import { migrate } from "./migrate.js";
import { createPrismaClient, type Db } from "./prisma.js";

export interface Database {
  db: Db;
  connectionString: string;
  embedded: boolean;
  /** Whether the database answers now, why not, and when that changes (server/db/database-supervisor.ts). */
  availability: DatabaseAvailability;
  close(): Promise<void>;
}

export async function openDatabase(config: Config, log: Logger): Promise<Database> {
  let embedded: RunningPostgres | undefined;
  let embeddedOptions: EmbeddedPostgresOptions | undefined;
  let connectionString = config.databaseUrl;
  if (!connectionString) {
    const started = Date.now();
    const pgDir = path.join(config.dataDir, "pg");
    embeddedOptions = {
      dataDir: pgDir,
      port: config.databasePort,
      password: await embeddedPassword(config.dataDir),
      onLog: (line) => log.debug({ component: "postgres" }, line),
    };
    embedded = await startEmbeddedPostgres(embeddedOptions);
    connectionString = embedded.connectionString("postgres");
    log.info({ dataDir: pgDir, port: config.databasePort, ms: Date.now() - started }, "embedded PostgreSQL started");
  }
  try {
    const applied = await migrate(connectionString);
    if (applied.length > 0) log.info({ migrations: applied }, "database migrations applied");
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  const db = createPrismaClient(connectionString);
  const restartOptions = embeddedOptions;
  const supervisor = superviseDatabase({
    connectionString,
    log: log.child({ component: "database" }),
    embedded: embedded && restartOptions ? { running: embedded, restart: () => startEmbeddedPostgres(restartOptions) } : undefined,
  });
  return {
    db,
    connectionString,
    embedded: embedded !== undefined,
    availability: supervisor,
    async close() {
      await supervisor.stop();
      // Shutting down: a disconnect that fails leaves nothing to release, and the embedded cluster must still be stopped.
      await db.$disconnect().catch(() => undefined);
      await supervisor.postgres?.stop();
    },
  };
}

/** The embedded cluster's password, generated on first start and kept beside it (it only listens on 127.0.0.1). */
async function embeddedPassword(dataDir: string): Promise<string> {
  const file = path.join(dataDir, "pg-password");
  try {
    return (await fs.readFile(file, "utf8")).trim();
  } catch {
    // No password file yet (the first start): make one. A file that exists but cannot be read fails the write below.
    const password = randomBytes(18).toString("base64url");
    await fs.mkdir(dataDir, { recursive: true });
    await fs.writeFile(file, password + "\n", { mode: 0o600 });
    return password;
  }
}
