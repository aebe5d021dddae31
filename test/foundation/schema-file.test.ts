/** The committed schema.graphql is the SDL of the schema the server builds: the API contract cannot drift unseen. */
import fs from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { printSchemaFile } from "../../scripts/schema-file.js";

const SCHEMA_FILE = fileURLToPath(new URL("../../schema.graphql", import.meta.url));

describe("schema.graphql", () => {
  it("equals the SDL printed from the built schema", async () => {
    const [committed, built] = await Promise.all([fs.readFile(SCHEMA_FILE, "utf8"), printSchemaFile()]);
    if (committed !== built) {
      // Show the first differing line: a toEqual of two ~1000-line strings is unreadable.
      const a = committed.split("\n");
      const b = built.split("\n");
      const line = a.findIndex((text, i) => text !== b[i]);
      const at = line === -1 ? a.length : line;
      expect.fail(
        `schema.graphql is stale: run \`npm run schema\` and commit it. First difference at line ${at + 1}:\n` +
          `  schema.graphql: ${JSON.stringify(a[at])}\n  built schema:   ${JSON.stringify(b[at])}`,
      );
    }
  });

  it("holds the operations of the API contract", async () => {
    const built = await printSchemaFile();
    for (const field of ["login(", "cancelRun(", "runJob(", "runUpdated(", "taskUpdated(", "restorePoints(", "backupStats("]) {
      expect(built).toContain(field);
    }
  });
});
