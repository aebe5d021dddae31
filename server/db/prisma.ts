/** The Prisma client over node-postgres (Prisma 7 has no native query engine: the driver adapter is mandatory). */
import v8 from "node:v8";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "./generated/client.js";

export type Db = PrismaClient;
export { Prisma } from "./generated/client.js";

export function createPrismaClient(connectionString: string): Db {
  // Prisma 7 compiles queries in a 3 MB WebAssembly module: V8's optimizing tier for it (TurboFan) held 75-100 MB of the
  // server's RSS (idle 233 -> 160 MB; after 600 API queries 295-311 -> 208 MB) for no query time we could measure on top
  // of the noise (issue 14). Liftoff only: compiled once, small. Read when the module is compiled, at the first query.
  v8.setFlagsFromString("--liftoff-only");
  return new PrismaClient({ adapter: new PrismaPg({ connectionString }) });
}
