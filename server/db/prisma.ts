/** The Prisma client over node-postgres (Prisma 7 has no native query engine: the driver adapter is mandatory). */
import v8 from "node:v8";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient, type Run as GeneratedRun } from "./generated/client.js";

/**
 * Columns no read returns unless it asks for them: Run.taskMessages is kept by Postgres for the runs page's search only (a
 * failed run's copy of its tasks' messages, which every page of runs would otherwise carry).
 */
const OMITTED = { run: { taskMessages: true } } as const;

export type Db = PrismaClient<never, typeof OMITTED>;
export { Prisma } from "./generated/client.js";

export type Run = Omit<GeneratedRun, keyof typeof OMITTED.run>;

export interface PrismaClientOptions {
  /** Every SQL statement Prisma sends, with its parameters as JSON (Prisma's QueryEvent): bench/history.ts EXPLAINs them. */
  onQuery?: (event: { query: string; params: string }) => void;
}

export function createPrismaClient(connectionString: string, options: PrismaClientOptions = {}): Db {
  // Prisma 7 compiles queries in a 3 MB WebAssembly module: V8's optimizing tier for it (TurboFan) held 75-100 MB of the
  // server's RSS (idle 233 -> 160 MB; after 600 API queries 295-311 -> 208 MB) for no query time we could measure on top
  // of the noise (issue 14). Liftoff only: compiled once, small. Read when the module is compiled, at the first query.
  v8.setFlagsFromString("--liftoff-only");
  const adapter = new PrismaPg({ connectionString });
  if (!options.onQuery) return new PrismaClient({ adapter, omit: OMITTED });
  const client = new PrismaClient({ adapter, omit: OMITTED, log: [{ emit: "event", level: "query" }] });
  client.$on("query", options.onQuery);
  return client as unknown as Db;
}
