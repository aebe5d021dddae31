/** The Prisma client over node-postgres (Prisma 7 has no native query engine: the driver adapter is mandatory). */
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "./generated/client.js";

export type Db = PrismaClient;
export { Prisma } from "./generated/client.js";

export function createPrismaClient(connectionString: string): Db {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString }) });
}
