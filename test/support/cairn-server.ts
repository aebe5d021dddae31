/**
 * A real Cairn server in this process for a test file: its own database (cloned from the migrated template), its own
 * DATA_DIR, a random port, and optionally its own lab pools. `graphql()` speaks to it over real HTTP.
 */
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { startCairn, type RunningCairn } from "../../server/app.js";
import { loadConfig } from "../../server/config.js";
import { createTestDatabase, type TestDatabase } from "./database.js";
import { graphql as gql, querySource, type AnyDocument, type ResultOf, type VariablesOf } from "./graphql.js";

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const LOGIN = gql("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }");

export const ADMIN_PASSWORD = "admin-password-for-tests";

export interface TestCairn {
  url: string;
  cairn: RunningCairn;
  database: TestDatabase;
  dataDir: string;
  /** Every log line the server wrote, as text (for "no secret in the logs" checks). */
  logs: string[];
  /** A query as text: give its result type (`graphql<{ ... }>(...)`), or better use a typed document. */
  graphql<T = any>(query: string, variables?: Record<string, unknown>, token?: string): Promise<GraphQLResult<T>>;
  /** A typed document (test/support/graphql.ts): its result and variables are typed from the schema. */
  graphql<D extends AnyDocument>(document: D, variables?: VariablesOf<D>, token?: string): Promise<GraphQLResult<ResultOf<D>>>;
  login(username?: string, password?: string): Promise<string>;
  stop(): Promise<void>;
}

export interface GraphQLResult<T> {
  status: number;
  data?: T;
  errors?: { message: string; extensions?: { code?: string; field?: string } }[];
}

export async function startTestCairn(
  options: {
    lab?: boolean;
    labPools?: number;
    env?: Record<string, string>;
    /** Cairn runs its own embedded PostgreSQL in DATA_DIR/pg on a free port (no DATABASE_URL), as `npm start` does. */
    embeddedDatabase?: boolean;
  } = {},
): Promise<TestCairn> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-test-data-"));
  await fs.chmod(dataDir, 0o755);
  const embeddedPort = options.embeddedDatabase ? await freePort() : undefined;
  const database: TestDatabase = embeddedPort
    ? {
        // Read on use: the password file is written by the first start.
        get url() {
          const password = readFileSync(path.join(dataDir, "pg-password"), "utf8").trim();
          return `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${embeddedPort}/postgres`;
        },
        name: "postgres",
        drop: async () => undefined,
      }
    : await createTestDatabase();
  const logs: string[] = [];
  const config = loadConfig({
    PORT: "0",
    DATA_DIR: dataDir,
    ...(embeddedPort ? { DATABASE_PORT: String(embeddedPort) } : { DATABASE_URL: database.url }),
    ADMIN_PASSWORD,
    LAB: options.lab ? "on" : "off",
    LAB_PORT: "0",
    LAB_POOLS: String(options.labPools ?? 1),
    LAB_DISK_MB: "8",
    LOG_LEVEL: "debug",
    ...options.env,
  });
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(String(chunk));
      callback();
    },
  });
  const cairn = await startCairn(config, { logDestination: destination }).catch(async (error: unknown) => {
    // Nobody gets a server to stop: remove what was made for it.
    await database.drop().catch(() => undefined);
    await fs.rm(dataDir, { recursive: true, force: true });
    throw error;
  });
  const url = cairn.url;
  const graphql = async <T>(
    query: string | AnyDocument,
    variables?: Record<string, unknown>,
    token?: string,
  ): Promise<GraphQLResult<T>> => {
    const response = await fetch(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query: querySource(query), variables }),
    });
    const body = (await response.json()) as GraphQLResult<T>;
    return { ...body, status: response.status };
  };
  return {
    url,
    cairn,
    database,
    dataDir,
    logs,
    graphql,
    async login(username = "admin", password = ADMIN_PASSWORD) {
      const result = await graphql<ResultOf<typeof LOGIN>>(LOGIN, { u: username, p: password });
      if (!result.data) throw new Error(`login failed: ${JSON.stringify(result.errors)}`);
      return result.data.login.token;
    },
    async stop() {
      await cairn.stop();
      await database.drop();
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Creates a user with a role directly in the database (the API has no user management yet) and signs it in. */
export async function createUser(
  server: TestCairn,
  username: string,
  role: "ADMIN" | "OPERATOR" | "VIEWER",
  password = `${username}-password`,
): Promise<string> {
  const { hashPassword } = await import("../../server/security/passwords.js");
  const { createPrismaClient } = await import("../../server/db/prisma.js");
  const db = createPrismaClient(server.database.url);
  try {
    await db.user.create({ data: { username, role, passwordHash: await hashPassword(password) } });
  } finally {
    await db.$disconnect();
  }
  return server.login(username, password);
}
