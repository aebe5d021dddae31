/**
 * Schema diffs with Prisma's own schema engine compiled to WebAssembly (the native engine cannot be downloaded here; see
 * STACK.md). Used to create migrations (scripts/create-migration.ts) and by the test proving that the migrations give exactly
 * prisma/schema.prisma. The engine connects through @prisma/adapter-pg; no shadow database is ever used (its path is broken
 * with adapter-pg 7.10), and neither is introspection of a live database (see diffSchemas).
 */
import fs from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { PrismaPg } from "@prisma/adapter-pg";
import { bindSqlAdapterFactory } from "@prisma/driver-adapter-utils";

export const SCHEMA_PATH = path.resolve(import.meta.dirname, "../prisma/schema.prisma");

type DiffTarget = { tag: "empty" } | { tag: "schemaDatamodel"; files: { path: string; content: string }[] };

interface SchemaEngineWasm {
  diff(params: { from: DiffTarget; to: DiffTarget; script: boolean; exitCode: boolean | null; filters: unknown }): Promise<{
    exitCode: number;
    stdout: string | null;
  }>;
  free(): void;
}

async function loadEngine(connectionString: string, schema: { path: string; content: string }): Promise<SchemaEngineWasm> {
  const require = createRequire(import.meta.url);
  const bgPath = require.resolve("@prisma/schema-engine-wasm/schema_engine_bg");
  const bindings = await import(bgPath);
  const wasmBytes = await fs.readFile(path.join(path.dirname(bgPath), "schema_engine_bg.wasm"));
  // The package imports its .wasm as an ES module, which Node 20 cannot: instantiate it ourselves and hand it over.
  const wasmApi = (
    globalThis as unknown as {
      WebAssembly: { instantiate(bytes: Buffer, imports: object): Promise<{ instance: { exports: Record<string, unknown> } }> };
    }
  ).WebAssembly;
  const { instance } = await wasmApi.instantiate(wasmBytes, { "./schema_engine_bg.js": bindings });
  (globalThis as Record<string, unknown>).PRISMA_WASM_PANIC_REGISTRY ??= {
    set_message(message: string) {
      throw new Error(message);
    },
  };
  bindings.__wbg_set_wasm(instance.exports);
  (instance.exports as { __wbindgen_start: () => void }).__wbindgen_start();
  const adapter = bindSqlAdapterFactory(new PrismaPg({ connectionString }));
  return bindings.SchemaEngine.new({ datamodels: [[schema.path, schema.content]] }, () => undefined, adapter);
}

function emptyFilters() {
  return { externalTables: [], externalEnums: [] };
}

/**
 * SQL that turns the schema `fromContent` (null = an empty database) into `toContent`. Schema against schema: the engine's
 * introspection of a live database fails with adapter-pg 7.10 ("Column type 'char' could not be deserialized"), so each
 * migration folder keeps the schema.prisma it was made from, and the next migration is the diff from that one.
 */
export async function diffSchemas(connectionString: string, fromContent: string | null, toContent: string): Promise<string> {
  const to = { path: SCHEMA_PATH, content: toContent };
  const engine = await loadEngine(connectionString, to);
  try {
    const result = await engine.diff({
      from: fromContent === null ? { tag: "empty" } : { tag: "schemaDatamodel", files: [{ path: SCHEMA_PATH, content: fromContent }] },
      to: { tag: "schemaDatamodel", files: [to] },
      script: true,
      exitCode: null,
      filters: emptyFilters(),
    });
    return normalise(result.stdout ?? "");
  } finally {
    engine.free();
  }
}

function normalise(sql: string): string {
  return sql.includes("This is an empty migration.") ? "" : sql.trim();
}
