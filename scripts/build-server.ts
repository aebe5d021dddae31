/**
 * `npm run build`: the server compiled into dist/ (dist/server/main.js), which `npm start` runs with plain node: no compiler,
 * no loader in the running process (tsx's loader alone held tens of MB and put esbuild beside every backup).
 *
 * tsc, not esbuild: type-graphql reads the `design:type` metadata of every @Field/@Arg, which only tsc's
 * emitDecoratorMetadata writes. The Prisma client (server/db/generated, TypeScript) is compiled with the rest.
 * Folders the server finds relative to its own module (import.meta.url: ../../dashboard/build, ../../graphiql/build,
 * ../../prisma/migrations: {@link LINKED}; keep it in step with every `new URL("../../...", import.meta.url)` of server/) are
 * linked into dist/ at the same depth, so that they resolve to the checkout's copies whether the server runs from server/ or
 * dist/server/ (a dashboard rebuilt later is seen without rebuilding the server).
 *
 * `npm start`'s prestart (scripts/prepare-start.ts) calls {@link buildServerIfStale}: a build only when a source is newer.
 */
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const at = (...parts: string[]) => path.join(root, ...parts);

export const DIST = at("dist");
/** Written last by a build that finished: its mtime is the build's time (tsc rewrites files, a stamp says all of them are there). */
const STAMP = path.join(DIST, ".built");
/** What the build reads: a change in any of them makes dist/ stale. */
const INPUTS = ["server", "tsconfig.json", "tsconfig.build.json", "package-lock.json"];
/** Folders read at run time through paths relative to a module (see the header), linked from dist/ to the checkout. */
const LINKED = [path.join("dashboard", "build"), path.join("graphiql", "build"), path.join("prisma", "migrations")];

function newest(target: string): number {
  if (!existsSync(target)) return 0;
  const stat = statSync(target);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return readdirSync(target).reduce((max, name) => Math.max(max, newest(path.join(target, name))), stat.mtimeMs);
}

export function serverBuildIsStale(): boolean {
  if (!existsSync(STAMP) || !existsSync(path.join(DIST, "server", "main.js"))) return true;
  const built = statSync(STAMP).mtimeMs;
  return INPUTS.some((input) => newest(at(input)) > built);
}

/** The Prisma client is TypeScript that the build compiles: generated first when missing or older than the schema. */
export function ensurePrismaClient(): void {
  const client = at("server", "db", "generated", "client.ts");
  if (existsSync(client) && statSync(client).mtimeMs >= newest(at("prisma", "schema.prisma"))) return;
  console.error("generating the Prisma client...");
  execFileSync(at("node_modules", ".bin", "prisma"), ["generate"], { cwd: root, stdio: ["ignore", 2, 2] });
}

function buildServer(): void {
  ensurePrismaClient();
  // Built beside dist/ and swapped in whole: a server started from dist/ meanwhile never loads half a build, and tsc never
  // leaves the .js of a removed source behind (it does not delete outputs).
  const next = `${DIST}.next-${process.pid}`;
  const old = `${DIST}.old-${process.pid}`;
  rmSync(next, { recursive: true, force: true });
  try {
    execFileSync(
      process.execPath,
      [at("node_modules", "typescript", "bin", "tsc"), "-p", at("tsconfig.build.json"), "--outDir", next],
      // stdout is for the server's JSON log lines when this runs as `npm start`'s prestart: tsc's report goes to stderr.
      { cwd: root, stdio: ["ignore", 2, 2] },
    );
    loadQueryCompilerFromFile(next);
    for (const folder of LINKED) {
      const link = path.join(next, folder);
      mkdirSync(path.dirname(link), { recursive: true });
      // Relative, at the same depth as in dist/: still right once the folder is renamed to dist.
      symlinkSync(path.relative(path.dirname(link), at(folder)), link, "dir");
    }
    writeFileSync(path.join(next, ".built"), `${new Date().toISOString()}\n`);
    if (existsSync(DIST)) renameSync(DIST, old);
    renameSync(next, DIST);
  } finally {
    rmSync(next, { recursive: true, force: true });
    rmSync(old, { recursive: true, force: true });
  }
}

/**
 * The generated client imports Prisma's query compiler as a module holding the WebAssembly in base64 (4.6 MB): the module's
 * source and its string stay in the heap for the life of the process, 9-10 MB of RSS for bytes used once. The built client
 * reads the same WebAssembly from a file beside it instead. When Prisma's loader no longer has the expected shape the build
 * fails: it must be looked at, not silently kept.
 */
function loadQueryCompilerFromFile(built: string): void {
  const classFile = path.join(built, "server", "db", "generated", "internal", "class.js");
  const source = readFileSync(classFile, "utf8");
  const loader =
    /getQueryCompilerWasmModule: async \(\) => \{\s*const \{ wasm \} = await import\("(@prisma\/client\/runtime\/query_compiler_\w+_bg\.postgresql)\.wasm-base64\.mjs"\);\s*return await decodeBase64AsWasm\(wasm\);\s*\}/;
  const match = source.match(loader);
  if (!match) {
    throw new Error(
      `the Prisma client's query compiler loader in ${path.relative(root, classFile)} is not the one scripts/build-server.ts knows: update loadQueryCompilerFromFile`,
    );
  }
  const { wasm } = createRequire(import.meta.url)(`${match[1]}.wasm-base64.js`) as { wasm: string };
  const bytes = Buffer.from(wasm, "base64");
  if (!isValidWasm(bytes)) throw new Error(`${match[1]}.wasm-base64.js does not hold valid WebAssembly`);
  writeFileSync(path.join(path.dirname(classFile), QUERY_COMPILER_FILE), bytes);
  const fromFile = `getQueryCompilerWasmModule: async () => new WebAssembly.Module(await (await import("node:fs/promises")).readFile(new URL("./${QUERY_COMPILER_FILE}", import.meta.url)))`;
  writeFileSync(classFile, source.replace(loader, fromFile));
}

/**
 * Node flags of the built server wherever it is started (`npm start` in package.json and deploy/cairn.service write them
 * out: keep them in step).
 * --max-semi-space-size=4: a young generation of 2 x 4 MiB instead of V8's 2 x 16 MiB: 16-18 MB less resident memory idle,
 * measured; a busy API request costs about 5 % more CPU in collections.
 * --heap-growing-percent=100: the old generation may double between full collections. V8 counts every ArrayBuffer made
 * since the last full collection against that limit (each 64 KiB socket read of an export is one), and its own choice of
 * growth left 12 MB of slack over a 41 MB heap: during a transfer the limit was reached again and again, in bursts of full
 * collections 80-120 ms apart that each freed under 3 MB. Measured on bench:backup (2 GiB disk, three pairs of runs): 106-165
 * full collections and 1.7-3.1 s of main-thread pauses per benchmark without it, 21-30 and 0.53-0.64 s with it; peak RSS
 * during the backups 191-207 MB with it, 200-220 MB without (the heap stays near 40 MB either way: what it saves is the
 * collections, not memory). The FULL runs lost their bursts; a DELTA run may still have one (about 7 in a second).
 */
export const SERVER_NODE_FLAGS = ["--max-semi-space-size=4", "--heap-growing-percent=100"];

/**
 * glibc malloc settings of the built server, as `npm start` and deploy/cairn.service set them (keep them in step).
 * MALLOC_ARENA_MAX: two arenas instead of one per thread. MALLOC_MMAP_THRESHOLD_: every allocation of 128 KiB or more
 * (1 MiB hash batches, 2 MiB VHD blocks, transfer buffers) gets its own mapping, given back to the system when freed.
 * Without it glibc raises the threshold to the largest block freed so far (the 3.4 MB query compiler, read at start), and
 * then serves those buffers from the arenas, which keep the memory once freed: measured on the backup benchmark, idle
 * RSS 148-160 MB -> 112-130 MB, peak during a 512 MiB / 2 GiB backup 195 / 214 MB -> 178 / 185 MB, same speed.
 */
export const SERVER_ENV = { MALLOC_ARENA_MAX: "2", MALLOC_MMAP_THRESHOLD_: "131072" };

/** WebAssembly.validate (a global of every Node; this project's TypeScript libs do not declare it). */
export function isValidWasm(bytes: Uint8Array): boolean {
  return (globalThis as unknown as { WebAssembly: { validate(bytes: Uint8Array): boolean } }).WebAssembly.validate(bytes);
}

/** The query compiler's WebAssembly in the built client (dist/server/db/generated/internal/). */
export const QUERY_COMPILER_FILE = "query-compiler.wasm";

const LOCK = `${DIST}.lock`;
const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * One build at a time (test files run in parallel, and `npm start` may run beside a test): the lock is a folder holding the
 * builder's pid, taken over when that process is gone.
 */
function withBuildLock<T>(work: () => T): T {
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number(readFileSafe(path.join(LOCK, "pid")));
      if (owner > 0 && !alive(owner)) rmSync(LOCK, { recursive: true, force: true });
      else pause(200);
    }
  }
  try {
    writeFileSync(path.join(LOCK, "pid"), String(process.pid));
    return work();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

/** Builds when a source is newer than the build; returns whether this call built. */
export function buildServerIfStale(): boolean {
  // Checked under the lock: a build that finished while this process waited is not done twice.
  return withBuildLock(() => {
    if (!serverBuildIsStale()) return false;
    buildServer();
    return true;
  });
}

function readFileSafe(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const start = performance.now();
  withBuildLock(buildServer);
  console.error(`server built into ${path.relative(root, DIST)}/ in ${((performance.now() - start) / 1000).toFixed(1)} s`);
}
