/**
 * The real peer behind each kind of remote (LOCAL, NFS, SMB, S3), for tests and benches that run the same scenario on every
 * kind. Each peer gives the input of Cairn's `createRemote`, what is stored on it (read on the peer's own folder or bucket,
 * never through Cairn), and a way to make it unreachable in the middle of a run:
 *
 * - Network kinds are reached through a {@link CuttableProxy} (a TCP proxy in this process): `cut()` resets every open
 *   connection and closes the listener, so new connections are refused, as when a NAS goes away; `restore()` listens again
 *   on the same port. `throttle()` slows what goes through (to catch a run in the middle of a step).
 * - LOCAL has no connection to cut: `cut()` makes every folder of the remote immutable (`chattr +i`), so no name can be
 *   created, renamed or removed there any more, which fails a write at its rename as a full or read-only disk would.
 *
 * NFS is offered once test/remotes/ganesha-process.ts exists (it is loaded on demand); SMB needs `smbd`, NFS `ganesha.nfsd`.
 */
import { execFile, execFileSync } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { isTemporaryName } from "../../server/remotes/remote-path.js";
import { missingTools } from "./system-tools.js";

export type RemoteKindName = "LOCAL" | "NFS" | "SMB" | "S3";

/** What `createRemote(input:)` takes (docs/API.md). */
export interface RemoteInput {
  name: string;
  kind: RemoteKindName;
  location: string;
  options?: Record<string, unknown>;
  username?: string;
  password?: string;
}

export interface RemotePeer {
  kind: RemoteKindName;
  /**
   * The input of `createRemote` for a remote on this peer, named `name`: through the proxy for network kinds, or straight to
   * the server with `direct` (benchmarks: the proxy is not what is measured, and cannot cut that remote).
   */
  input(name: string, options?: { direct?: boolean }): RemoteInput;
  /**
   * Writes a local file to `remotePath` on the peer with an outside tool, straight to the server (the baseline of a
   * benchmark): `cp` then `sync` (LOCAL), `smbclient put`, `nfs-cp`, `curl -T` (an S3 PUT). Resolves once it is stored.
   */
  putWithOutsideTool(localFile: string, remotePath: string): Promise<void>;
  /** Copies a stored file to a local file, read on the peer itself (its folder, or a GET straight to the S3 server). */
  copyOut(remotePath: string, localFile: string): Promise<void>;
  /** The host a message about this remote should name (undefined for LOCAL). */
  host: string | undefined;
  /** The path a message about this remote should name: the folder, `share`, `export` or bucket. */
  path: string;
  /** Every file stored, path relative to the remote's root -> size in bytes, read on the peer itself. */
  files(): Promise<Map<string, number>>;
  /** Bytes stored under `prefix` (a remote path; everything by default), read on the peer itself. */
  bytesStored(prefix?: string): Promise<number>;
  /** Makes the remote unreachable (network kinds: connections reset, new ones refused; LOCAL: folders immutable). */
  cut(): Promise<void>;
  /** Undoes {@link cut}. */
  restore(): Promise<void>;
  /** Limits what goes through the proxy to about `bytesPerSecond` (both ways together); undefined lifts it. No-op on LOCAL. */
  throttle(bytesPerSecond: number | undefined): void;
  stop(): Promise<void>;
}

/** Why a kind cannot run here (a missing tool or helper), or undefined. Under CI=true a missing tool throws instead. */
export function peerSkipReason(kind: RemoteKindName): string | undefined {
  const tools: Record<RemoteKindName, string[]> = {
    LOCAL: ["chattr"],
    SMB: ["smbd", "smbpasswd"],
    NFS: ["ganesha.nfsd", "rpcbind"],
    S3: [],
  };
  if (kind === "NFS" && !existsSync(GANESHA_MODULE)) return "test/remotes/ganesha-process.ts is not there yet";
  const missing = missingTools(tools[kind]);
  if (missing.length === 0) return undefined;
  const reason = `needs ${missing.join(", ")} (apt-get install: see .ci/run)`;
  if (process.env.CI === "true") throw new Error(`CI must not skip: ${reason}`);
  console.warn(`SKIPPED ${kind}: ${reason}`);
  return reason;
}

const run = promisify(execFile);

const GANESHA_MODULE = fileURLToPath(new URL("../remotes/ganesha-process.ts", import.meta.url));

/** Starts the peer of one kind. */
export async function startRemotePeer(kind: RemoteKindName): Promise<RemotePeer> {
  switch (kind) {
    case "LOCAL":
      return startLocalPeer();
    case "SMB":
      return startSmbPeer();
    case "NFS":
      return startNfsPeer();
    case "S3":
      return startS3Peer();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The proxy

export interface CuttableProxy {
  port: number;
  cut(): Promise<void>;
  restore(): Promise<void>;
  throttle(bytesPerSecond: number | undefined): void;
  stop(): Promise<void>;
}

/**
 * A TCP proxy on 127.0.0.1 in front of `upstreamPort`. Throttling is one budget shared by every connection and both
 * directions: each chunk waits until the budget has room (the source is paused meanwhile, so backpressure holds).
 */
export async function startCuttableProxy(upstreamPort: number, upstreamHost = "127.0.0.1"): Promise<CuttableProxy> {
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  let rate: number | undefined;
  let nextFreeAt = 0;
  let listening = false;

  /** Forwards `from` to `to`, with backpressure and the throttle. */
  const forward = (from: net.Socket, to: net.Socket) => {
    let waits = 0;
    const hold = () => {
      waits++;
      from.pause();
    };
    const release = () => {
      if (--waits === 0 && !from.destroyed) from.resume();
    };
    from.on("data", (chunk: Buffer) => {
      if (!to.write(chunk)) {
        hold();
        to.once("drain", release);
      }
      if (rate !== undefined) {
        const now = Date.now();
        nextFreeAt = Math.max(now, nextFreeAt) + (chunk.length / rate) * 1000;
        const delay = nextFreeAt - now;
        if (delay >= 1) {
          hold();
          setTimeout(release, delay);
        }
      }
    });
    from.on("end", () => to.end());
  };

  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    const upstream = net.connect({ host: upstreamHost, port: upstreamPort });
    const pair = { client, upstream };
    pairs.add(pair);
    const close = () => {
      pairs.delete(pair);
      if (!client.destroyed) client.resetAndDestroy();
      if (!upstream.destroyed) upstream.destroy();
    };
    client.on("error", close);
    upstream.on("error", close);
    client.on("close", close);
    upstream.on("close", close);
    upstream.once("connect", () => {
      forward(client, upstream);
      forward(upstream, client);
      client.resume();
    });
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        listening = true;
        resolve();
      });
    });
  await listen(0);
  const port = (server.address() as net.AddressInfo).port;

  const resetAll = () => {
    for (const { client, upstream } of [...pairs]) {
      if (!client.destroyed) client.resetAndDestroy();
      upstream.destroy();
    }
    pairs.clear();
  };
  const closeListener = () =>
    new Promise<void>((resolve) => {
      if (!listening) return resolve();
      listening = false;
      server.close(() => resolve());
    });

  return {
    port,
    async cut() {
      const closed = closeListener();
      resetAll();
      await closed;
    },
    async restore() {
      if (listening) return;
      // The port was ours a moment ago; another process taking it in between would be a rare accident, retried briefly.
      for (let attempt = 1; ; attempt++) {
        try {
          await listen(port);
          return;
        } catch (error) {
          if (attempt >= 20) throw error;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    },
    throttle(bytesPerSecond) {
      rate = bytesPerSecond;
      nextFreeAt = 0;
    },
    async stop() {
      const closed = closeListener();
      resetAll();
      await closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Files on a folder

/** Every file under `root` (relative POSIX path -> size); a missing folder is empty. */
export async function filesOfFolder(root: string): Promise<Map<string, number>> {
  const files = new Map<string, number>();
  const walk = async (folder: string) => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = await fs.readdir(folder, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw error;
    }
    for (const entry of entries) {
      const full = path.join(folder, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) files.set(path.relative(root, full).split(path.sep).join("/"), (await fs.stat(full)).size);
    }
  };
  await walk(root);
  return files;
}

function sumUnder(files: Map<string, number>, prefix = ""): number {
  const clean = prefix.replace(/\/+$/, "");
  let total = 0;
  for (const [file, size] of files) if (clean === "" || file === clean || file.startsWith(`${clean}/`)) total += size;
  return total;
}

/** Whether a stored path is a temporary name (a write in progress, or left by one that died). */
export function isTemporaryPath(file: string): boolean {
  return isTemporaryName(file.slice(file.lastIndexOf("/") + 1));
}

async function foldersUnder(root: string): Promise<string[]> {
  const folders = [root];
  for (const entry of (await fs.readdir(root, { recursive: true, withFileTypes: true })) as import("node:fs").Dirent[])
    if (entry.isDirectory()) folders.push(path.join(entry.parentPath, entry.name));
  return folders;
}

// ---------------------------------------------------------------------------------------------------------------------
// The kinds

async function startLocalPeer(): Promise<RemotePeer> {
  const folder = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-peer-local-"));
  await fs.chmod(folder, 0o755);
  let frozen: string[] = [];
  const files = () => filesOfFolder(folder);
  const restore = async () => {
    // Children before parents is not needed for -i, but every folder frozen is thawed, even one removed meanwhile.
    for (const dir of frozen) if (existsSync(dir)) execFileSync("chattr", ["-i", dir]);
    frozen = [];
  };
  return {
    kind: "LOCAL",
    host: undefined,
    path: folder,
    input: (name) => ({ name, kind: "LOCAL", location: folder }),
    copyOut: (remotePath, localFile) => fs.copyFile(path.join(folder, remotePath), localFile),
    async putWithOutsideTool(localFile, remotePath) {
      const target = path.join(folder, remotePath);
      await fs.mkdir(path.dirname(target), { recursive: true });
      await run("cp", [localFile, target]);
      // Cairn's LOCAL remote fsyncs what it writes: so does the baseline.
      await run("sync", [target]);
    },
    files,
    bytesStored: async (prefix) => sumUnder(await files(), prefix),
    async cut() {
      // Deepest first, so that each chattr still finds its folder writable when it walks in.
      const dirs = (await foldersUnder(folder)).sort((a, b) => b.length - a.length);
      for (const dir of dirs) {
        execFileSync("chattr", ["+i", dir]);
        frozen.push(dir);
      }
    },
    restore,
    throttle() {},
    async stop() {
      await restore();
      await fs.rm(folder, { recursive: true, force: true });
    },
  };
}

async function startSmbPeer(): Promise<RemotePeer> {
  const { startSamba } = await import("../remotes/samba-process.js");
  const samba = await startSamba();
  let proxy: CuttableProxy | undefined;
  try {
    proxy = await startCuttableProxy(samba.port, samba.host);
  } catch (error) {
    await samba.stop();
    throw error;
  }
  const files = () => filesOfFolder(samba.shareFolder);
  const via = proxy;
  return {
    kind: "SMB",
    host: "127.0.0.1",
    path: samba.share,
    input: (name, options) => ({
      name,
      kind: "SMB",
      location: `//127.0.0.1:${options?.direct ? samba.port : via.port}/${samba.share}`,
      username: samba.username,
      password: samba.password,
      // A cut connection is noticed by its reset; the time limit only bounds a request the server never answers.
      options: { timeoutMs: 20_000 },
    }),
    files,
    bytesStored: async (prefix) => sumUnder(await files(), prefix),
    copyOut: (remotePath, localFile) => fs.copyFile(path.join(samba.shareFolder, remotePath), localFile),
    async putWithOutsideTool(localFile, remotePath) {
      const folder = path.posix.dirname(remotePath);
      const commands = [...(folder === "." ? [] : [`mkdir ${folder}`]), `put ${localFile} ${remotePath}`];
      await run(
        "smbclient",
        [
          `//${samba.host}/${samba.share}`,
          "-p",
          String(samba.port),
          "-U",
          `${samba.username}%${samba.password}`,
          "-c",
          commands.join("; "),
        ],
        {
          maxBuffer: 16 * 1024 * 1024,
        },
      );
    },
    cut: () => via.cut(),
    restore: () => via.restore(),
    throttle: (rate) => via.throttle(rate),
    async stop() {
      await via.stop();
      await samba.stop();
    },
  };
}

interface GaneshaLike {
  host: string;
  nfsPort: number;
  mountPort: number;
  exportPath: string;
  folder: string;
  options: Record<string, unknown>;
  stop(): Promise<void>;
}

async function startNfsPeer(): Promise<RemotePeer> {
  // Loaded on demand: the NFS peer's helper may not be there yet on a checkout, and then only NFS is skipped.
  const module = (await import(/* @vite-ignore */ GANESHA_MODULE)) as { startGanesha(): Promise<GaneshaLike> };
  const ganesha = await module.startGanesha();
  const proxies: CuttableProxy[] = [];
  try {
    proxies.push(await startCuttableProxy(ganesha.nfsPort, ganesha.host));
    proxies.push(await startCuttableProxy(ganesha.mountPort, ganesha.host));
  } catch (error) {
    for (const proxy of proxies) await proxy.stop();
    await ganesha.stop();
    throw error;
  }
  const [nfs, mount] = proxies;
  const files = () => filesOfFolder(ganesha.folder);
  return {
    kind: "NFS",
    host: "127.0.0.1",
    path: ganesha.exportPath,
    input: (name, options) => ({
      name,
      kind: "NFS",
      location: `nfs://127.0.0.1:${options?.direct ? ganesha.nfsPort : nfs.port}${ganesha.exportPath}`,
      options: { ...ganesha.options, mountPort: options?.direct ? ganesha.mountPort : mount.port },
    }),
    copyOut: (remotePath, localFile) => fs.copyFile(path.join(ganesha.folder, remotePath), localFile),
    async putWithOutsideTool(localFile, remotePath) {
      // libnfs's URL takes the ports (the portmapper is not asked: see ganesha-process.ts) and the uid it speaks as.
      await fs.mkdir(path.dirname(path.join(ganesha.folder, remotePath)), { recursive: true });
      const query = `nfsport=${ganesha.nfsPort}&mountport=${ganesha.mountPort}&version=3&uid=0&gid=0`;
      await run("nfs-cp", [localFile, `nfs://${ganesha.host}${ganesha.exportPath}/${remotePath}?${query}`]);
    },
    files,
    bytesStored: async (prefix) => sumUnder(await files(), prefix),
    async cut() {
      await Promise.all(proxies.map((proxy) => proxy.cut()));
    },
    async restore() {
      await Promise.all(proxies.map((proxy) => proxy.restore()));
    },
    throttle(rate) {
      nfs.throttle(rate);
    },
    async stop() {
      for (const proxy of proxies) await proxy.stop();
      await ganesha.stop();
    },
  };
}

async function startS3Peer(): Promise<RemotePeer> {
  const { startS3rver } = await import("../remotes/s3rver-process.js");
  const s3 = await startS3rver();
  let proxy: CuttableProxy | undefined;
  try {
    proxy = await startCuttableProxy(Number(new URL(s3.endpoint).port), new URL(s3.endpoint).hostname);
  } catch (error) {
    await s3.stop();
    throw error;
  }
  const via = proxy;
  // Straight to the server, not through the proxy: what is stored is read even while the remote is cut.
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
  const files = async () => {
    const found = new Map<string, number>();
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, ContinuationToken: token }));
      for (const object of page.Contents ?? []) found.set(object.Key!, object.Size ?? 0);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return found;
  };
  return {
    kind: "S3",
    host: "127.0.0.1",
    path: s3.bucket,
    input: (name, options) => ({
      name,
      kind: "S3",
      location: s3.bucket,
      username: s3.accessKeyId,
      password: s3.secretAccessKey,
      options: {
        endpoint: options?.direct ? s3.endpoint : `http://127.0.0.1:${via.port}`,
        region: "us-east-1",
        forcePathStyle: true,
        connectionTimeoutMs: 5000,
      },
    }),
    async copyOut(remotePath, localFile) {
      const object = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: remotePath }));
      await pipeline(object.Body as Readable, createWriteStream(localFile));
    },
    async putWithOutsideTool(localFile, remotePath) {
      await run("curl", [
        "-s",
        "-S",
        "-f",
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        `${s3.accessKeyId}:${s3.secretAccessKey}`,
        // S3 asks for the payload's hash header on every signed request; curl sends none unless told (then 400).
        "-H",
        "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        "-T",
        localFile,
        `${s3.endpoint}/${s3.bucket}/${remotePath}`,
      ]);
    },
    files,
    bytesStored: async (prefix) => sumUnder(await files(), prefix),
    cut: () => via.cut(),
    restore: () => via.restore(),
    throttle: (rate) => via.throttle(rate),
    async stop() {
      client.destroy();
      await via.stop();
      await s3.stop();
    },
  };
}
