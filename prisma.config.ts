import { defineConfig } from "prisma/config";
import { fileURLToPath } from "node:url";

// The Prisma CLI downloads a native schema engine before every command, which cannot succeed on machines that only reach the
// npm registry. `generate` never runs that engine, so any existing file satisfies the check (see STACK.md, "Prisma 7").
// Migrations are applied by the server itself (server/db/migrate.ts) and created with scripts/create-migration.ts.
process.env.PRISMA_SCHEMA_ENGINE_BINARY ??= fileURLToPath(import.meta.url);

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "postgresql://localhost/unset" },
});
