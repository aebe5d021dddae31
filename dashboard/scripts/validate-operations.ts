/**
 * Validates every GraphQL operation of the dashboard against `schema.graphql` at the repository root.
 *
 * gql.tada types results and variables from the schema, but a field the schema lacks only becomes
 * `unknown` in the types, and `gql.tada check` cannot run here (it insists on `@gql.tada/svelte-support`,
 * whose required version is not published). So this runs graphql-js's own validation on the documents:
 * an unknown field, a missing argument or a wrong variable type fails `npm run check:dashboard`.
 *
 * Documents live only in `src/lib/api/operations*.ts` (exported constants); any `graphql(` call elsewhere
 * under `src/` fails the check too, so that none escapes validation.
 *
 * Usage: `tsx scripts/validate-operations.ts [schema file]` from dashboard/ (default `../schema.graphql`).
 */
import { readFileSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { buildSchema, validate, type DocumentNode } from "graphql";

const dashboard = fileURLToPath(new URL("..", import.meta.url));
const schemaPath = process.argv[2] ?? join(dashboard, "..", "schema.graphql");
const apiFolder = join(dashboard, "src", "lib", "api");

function filesUnder(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

function isDocument(value: unknown): value is DocumentNode {
  return typeof value === "object" && value !== null && (value as { kind?: unknown }).kind === "Document";
}

const problems: string[] = [];

const strays = filesUnder(join(dashboard, "src")).filter(
  (file) =>
    /\.(ts|svelte)$/.test(file) &&
    !/^operations.*\.ts$/.test(relative(apiFolder, file)) &&
    /\bgraphql\(\s*`/.test(readFileSync(file, "utf8")),
);
for (const file of strays) {
  problems.push(`${relative(dashboard, file)}: write GraphQL documents in src/lib/api/operations*.ts, where they are validated`);
}

let schemaText: string;
try {
  schemaText = readFileSync(schemaPath, "utf8");
} catch (cause) {
  throw new Error(`Cannot read the schema at ${schemaPath}: the server's SDL must be there (npm run schema writes it).`, {
    cause,
  });
}
const schema = buildSchema(schemaText);

let count = 0;
const modules = readdirSync(apiFolder).filter((name) => /^operations.*\.ts$/.test(name));
for (const name of modules) {
  const exports: Record<string, unknown> = await import(pathToFileURL(join(apiFolder, name)).href);
  for (const [exportName, value] of Object.entries(exports)) {
    if (!isDocument(value)) continue;
    count++;
    for (const error of validate(schema, value)) {
      problems.push(`src/lib/api/${name}: ${exportName}: ${error.message}`);
    }
  }
}

if (problems.length > 0) {
  console.error(`GraphQL operations do not match ${relative(process.cwd(), schemaPath)}:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`${count} GraphQL operations match ${relative(process.cwd(), schemaPath)}`);
