/**
 * `npm start`'s preparation, done only when needed so that a start after the first one is quick: the Prisma client is
 * generated when missing or older than prisma/schema.prisma, the dashboard is built (without its type checks, which
 * `npm test` and `npm run build:dashboard` run) when its build is missing or older than its sources or schema.graphql, and
 * the server is compiled into dist/ (scripts/build-server.ts) when a source is newer than its build. `npm start` then runs
 * dist/server/main.js with plain node.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildServerIfStale, ensurePrismaClient } from "./build-server.js";
import { buildGraphiqlIfStale } from "./build-graphiql.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const at = (...parts: string[]) => path.join(root, ...parts);

function newest(target: string): number {
  if (!existsSync(target)) return 0;
  const stat = statSync(target);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return readdirSync(target).reduce((max, name) => Math.max(max, newest(path.join(target, name))), stat.mtimeMs);
}

function run(command: string, args: string[], cwd = root): void {
  execFileSync(command, args, {
    cwd,
    // stdout is for the server's JSON log lines: the build tools' chatter goes to stderr.
    stdio: ["ignore", 2, 2],
    env: { ...process.env, PATH: `${at("node_modules", ".bin")}${path.delimiter}${process.env.PATH}` },
  });
}

ensurePrismaClient();

const built = at("dashboard", "build", "index.html");
const sources = Math.max(
  newest(at("dashboard", "src")),
  newest(at("dashboard", "static")),
  newest(at("schema.graphql")),
  newest(at("dashboard", "svelte.config.js")),
);
if (!existsSync(built) || statSync(built).mtimeMs < sources) {
  console.error("building the dashboard...");
  run("svelte-kit", ["sync"], at("dashboard"));
  run("gql-tada", ["generate", "output"], at("dashboard"));
  run("vite", ["build", "--logLevel", "warn"], at("dashboard"));
}

// GraphiQL is a convenience: a failed build (its packages left out of a production install) leaves /graphiql saying so.
await buildGraphiqlIfStale().then(
  (built) => built && console.error("built GraphiQL into graphiql/build"),
  (error: Error) => console.error(`GraphiQL was not built (/graphiql will say so): ${error.message}`),
);

// After the Prisma client: the server's build compiles it.
const start = performance.now();
if (buildServerIfStale()) console.error(`built the server into dist/ in ${((performance.now() - start) / 1000).toFixed(1)} s`);
