/**
 * `npm run build:graphiql`: bundles the GraphiQL page (graphiql/main.ts: graphiql 4, React, graphql-ws) with esbuild into
 * graphiql/build, which the server serves at /graphiql (server/http/graphiql-route.ts). Built when stale by `npm start`'s
 * preparation and by `npm test`'s pretest.
 *
 * graphiql 4, not 5: 5 moved to the Monaco editor, whose web workers and size do not fit a page under Cairn's CSP
 * (`default-src 'self'`, no blob: workers, no eval); 4 is the last line on CodeMirror 5, which needs neither.
 * The fonts graphiql's CSS carries as data: URLs are written out as files, so that the CSP's `font-src 'self'` holds as is.
 * React comes as graphiql's peer dependency, which npm installs, rather than listed in package.json: listed, it would turn on
 * Biome's React rules for the whole project (they take graphql-ws's `useServer` for a React hook).
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const at = (...parts: string[]) => path.join(root, ...parts);

export const GRAPHIQL_BUILD = at("graphiql", "build");
const STAMP = path.join(GRAPHIQL_BUILD, ".built");
const INPUTS = [at("graphiql", "main.ts"), at("package-lock.json"), fileURLToPath(import.meta.url)];

export function graphiqlBuildIsStale(): boolean {
  if (!existsSync(STAMP)) return true;
  const built = statSync(STAMP).mtimeMs;
  return INPUTS.some((input) => existsSync(input) && statSync(input).mtimeMs > built);
}

export async function buildGraphiql(): Promise<void> {
  // Built beside and swapped in whole: a server serving the page meanwhile never sends half a build.
  const next = `${GRAPHIQL_BUILD}.next-${process.pid}`;
  const old = `${GRAPHIQL_BUILD}.old-${process.pid}`;
  rmSync(next, { recursive: true, force: true });
  try {
    await build({
      entryPoints: { graphiql: at("graphiql", "main.ts") },
      outdir: next,
      bundle: true,
      format: "esm",
      minify: true,
      target: "es2022",
      define: { "process.env.NODE_ENV": '"production"' },
      legalComments: "linked",
      logLevel: "warning",
    });
    const cssFile = path.join(next, "graphiql.css");
    mkdirSync(path.join(next, "fonts"), { recursive: true });
    const css = readFileSync(cssFile, "utf8").replace(
      /url\(["']?data:font\/(woff2?);base64,([A-Za-z0-9+/=]+)["']?\)/g,
      (_m, type, data) => {
        const bytes = Buffer.from(data, "base64");
        const name = `${createHash("sha256").update(bytes).digest("hex").slice(0, 16)}.${type}`;
        writeFileSync(path.join(next, "fonts", name), bytes);
        return `url(fonts/${name})`;
      },
    );
    writeFileSync(cssFile, css);
    writeFileSync(path.join(next, ".built"), `${new Date().toISOString()}\n`);
    if (existsSync(GRAPHIQL_BUILD)) renameSync(GRAPHIQL_BUILD, old);
    renameSync(next, GRAPHIQL_BUILD);
  } finally {
    rmSync(next, { recursive: true, force: true });
    rmSync(old, { recursive: true, force: true });
  }
}

/** Builds when stale; returns whether this call built. */
export async function buildGraphiqlIfStale(): Promise<boolean> {
  if (!graphiqlBuildIsStale()) return false;
  await buildGraphiql();
  return true;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const started = performance.now();
  await buildGraphiql();
  const size = readdirSync(GRAPHIQL_BUILD).reduce((sum, name) => sum + statSync(path.join(GRAPHIQL_BUILD, name)).size, 0);
  console.error(
    `built GraphiQL into graphiql/build (${(size / 1024).toFixed(0)} KiB) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}
