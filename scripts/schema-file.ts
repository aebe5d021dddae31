import { lexicographicSortSchema, printSchema } from "graphql";
import { buildCairnSchema } from "../server/graphql/build-schema.js";

const HEADER = "# Generated from the server's schema by `npm run schema`: do not edit. The contract is docs/API.md.\n\n";

/** The committed SDL: the built schema, sorted so that its diff shows only real changes. */
export async function printSchemaFile(): Promise<string> {
  return HEADER + printSchema(lexicographicSortSchema(await buildCairnSchema())) + "\n";
}
