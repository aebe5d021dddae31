/** `npm run schema`: writes the SDL of the running server's schema to schema.graphql (committed; a test keeps it fresh). */
import "reflect-metadata";
import fs from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { printSchemaFile } from "./schema-file.js";

const target = fileURLToPath(new URL("../schema.graphql", import.meta.url));
await fs.writeFile(target, await printSchemaFile());
console.log(`wrote ${target}`);
