import { execFileSync, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** A running Samba smbd serving one share from a temp folder, for tests. */
export interface SambaPeer {
  host: string;
  port: number;
  share: string;
  username: string;
  password: string;
  /** The folder behind the share, to look at what the server really stored. */
  shareFolder: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Lines added to smb.conf's [global] section, e.g. `server signing = mandatory` or `server max protocol = SMB2_10`. */
export interface SambaOptions {
  global?: string[];
}

/**
 * Starts `smbd` in the foreground on 127.0.0.1 and a free port, with its own passdb, state folders and
 * share under a temp folder (nothing system-wide is touched; the SMB user is the current Unix user,
 * given an SMB password in the private passdb). Everything else is Samba's default: async I/O on (so
 * large reads, writes and flushes are first answered STATUS_PENDING), dialects up to SMB 3.1.1, signing
 * offered but not required. Ready once smbd logs "waiting for connections".
 */
export async function startSamba(options: SambaOptions = {}): Promise<SambaPeer> {
  const base = await mkdtemp(join(tmpdir(), "cairn-samba-"));
  const folders = ["private", "lock", "state", "cache", "pid", "ncalrpc", "share"];
  await Promise.all(folders.map((folder) => mkdir(join(base, folder))));
  const port = await freePort();
  const username = execFileSync("id", ["-un"]).toString().trim();
  const password = "Cairn-test-1234";
  const config = join(base, "smb.conf");
  await writeFile(
    config,
    [
      "[global]",
      "  server role = standalone server",
      "  interfaces = 127.0.0.1",
      "  bind interfaces only = yes",
      `  smb ports = ${port}`,
      "  disable netbios = yes",
      "  server min protocol = SMB2_02",
      `  passdb backend = tdbsam:${join(base, "private", "passdb.tdb")}`,
      ...["private", "lock", "state", "cache", "pid", "ncalrpc"].map(
        (folder) => `  ${folder === "ncalrpc" || folder === "private" ? `${folder} dir` : `${folder} directory`} = ${join(base, folder)}`,
      ),
      "  load printers = no",
      "  printing = bsd",
      "  printcap name = /dev/null",
      "  disable spoolss = yes",
      "  map to guest = never",
      ...(options.global ?? []).map((line) => `  ${line}`),
      "[backups]",
      `  path = ${join(base, "share")}`,
      "  read only = no",
      `  valid users = ${username}`,
      "",
    ].join("\n"),
  );
  execFileSync("smbpasswd", ["-c", config, "-s", "-a", username], {
    input: `${password}\n${password}\n`,
    stdio: ["pipe", "ignore", "pipe"],
  });

  // Its own process group: smbd signals its whole group when it shuts down, which would kill the test runner.
  const child = spawn("smbd", ["--foreground", "--no-process-group", `--configfile=${config}`, "--debug-stdout", "-d", "3"], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let log = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let hang: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      log = (log + line + "\n").slice(-4000);
      if (line.includes("waiting for connections")) resolve();
    });
    child.once("error", reject);
    void exited.then(() => reject(new Error(`smbd exited before listening:\n${log}`)));
    // Only bounds a hang.
    hang = setTimeout(() => reject(new Error(`smbd did not listen within 60 s:\n${log}`)), 60_000);
  })
    .catch(async (error: unknown) => {
      // Never leave smbd behind a failed start.
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      if (child.pid !== undefined) await exited;
      await rm(base, { recursive: true, force: true });
      throw error;
    })
    .finally(() => clearTimeout(hang));

  return {
    host: "127.0.0.1",
    port,
    share: "backups",
    username,
    password,
    shareFolder: join(base, "share"),
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
      await rm(base, { recursive: true, force: true });
    },
  };
}
