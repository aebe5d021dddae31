/**
 * A real S3 server with Object Lock for tests: Ceph's RADOS Gateway (Debian's radosgw, Ceph 16 Pacific) on a one-node Ceph
 * made for the test in a temporary folder: one monitor, one OSD on `memstore` (objects in memory), pools of size 1, no
 * manager, no authentication inside the cluster, everything on 127.0.0.1. s3rver has no Object Lock; this is the only S3
 * server with it that Debian ships.
 *
 * Startup is monitor, then OSD, then gateway, then an S3 user and a bucket created with Object Lock on. Readiness is a
 * condition polled with a bound (the gateway answering HTTP, then the bucket created), never a fixed pause. A start that
 * fails stops what it started and removes the folder, and its error carries the end of the daemons' logs.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { eventually } from "./eventually.js";
import { skipReasonForTools } from "./system-tools.js";

const run = promisify(execFile);

/** The Debian packages these binaries come from: ceph-mon, ceph-osd, radosgw, ceph-common. */
const CEPH_TOOLS = ["ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph"];

/** Why the Object Lock S3 server cannot run here (Ceph binaries missing), or undefined. Under CI=true a missing tool throws. */
export function objectLockS3SkipReason(): string | undefined {
  return skipReasonForTools(CEPH_TOOLS);
}

export interface ObjectLockS3 {
  /** `http://127.0.0.1:<port>`, path-style, region us-east-1. */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** A bucket created with Object Lock on (so versioned). */
  bucket: string;
  /** Kills every daemon and removes the folder. */
  stop(): Promise<void>;
}

/** Only bounds a hang: the monitor answers in a second or so, the gateway within about ten (it creates its pools first). */
const READY_HANG_MS = 120_000;
const COMMAND_TIMEOUT_MS = 60_000;

/** A TCP port free on 127.0.0.1 right now. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function cephConf(options: { fsid: string; folder: string; monPort: number; rgwPort: number }): string {
  const { fsid, folder, monPort, rgwPort } = options;
  return `[global]
fsid = ${fsid}
mon host = v1:127.0.0.1:${monPort}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = ${folder}/keyring
run dir = ${folder}/run
admin socket = ${folder}/run/$name.asok
log file = ${folder}/log/$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0

[mon]
mon data = ${folder}/mon

[osd]
osd data = ${folder}/osd
osd objectstore = memstore
memstore device bytes = 4294967296
# With no authentication the OSD may send its start-up crush commands before it has the monitor map, which the monitor
# refuses ("wrong fsid") and the OSD stops; the crush entry is added before it starts instead.
osd crush update on start = false
osd class update on start = false

[client.rgw.cairn]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${folder}/rgw
`;
}

/** The monitor's refusal of a command sent before the CLI knew the cluster's fsid (see `ceph` in startObjectLockS3). */
function isZeroFsidRefusal(error: unknown): boolean {
  return /EPERM: problem getting command descriptions/.test((error as Error).message);
}

/** Starts a one-node Ceph with a RADOS Gateway, an S3 user and a bucket with Object Lock on. */
export async function startObjectLockS3(bucket = "immutable-backups"): Promise<ObjectLockS3> {
  const folder = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-ceph-"));
  const daemons: { name: string; child: ChildProcess; exited: Promise<void>; stderr: () => string }[] = [];
  let client: S3Client | undefined;

  const stop = async () => {
    client?.destroy();
    // Nothing of this cluster outlives the test (memstore keeps no data anyway): killed, not shut down cleanly, gateway first.
    for (const daemon of [...daemons].reverse()) {
      if (daemon.child.exitCode === null && daemon.child.signalCode === null) daemon.child.kill("SIGKILL");
      await daemon.exited;
    }
    await fs.rm(folder, { recursive: true, force: true });
  };

  const logTails = async () => {
    const logs = await fs.readdir(path.join(folder, "log")).catch(() => [] as string[]);
    const tails: string[] = [];
    for (const daemon of daemons) if (daemon.stderr() !== "") tails.push(`--- ${daemon.name} (stderr):\n${daemon.stderr()}`);
    for (const log of logs) {
      const text = await fs.readFile(path.join(folder, "log", log), "utf8").catch(() => "");
      if (text !== "") tails.push(`--- ${log}:\n${text.split("\n").slice(-15).join("\n")}`);
    }
    return tails.join("\n");
  };

  try {
    const [monPort, rgwPort] = [await freePort(), await freePort()];
    const fsid = randomUUID();
    const conf = path.join(folder, "ceph.conf");
    for (const dir of ["mon", "osd", "run", "log", "rgw"]) await fs.mkdir(path.join(folder, dir));
    await fs.writeFile(conf, cephConf({ fsid, folder, monPort, rgwPort }));
    const tool = (command: string, args: string[]) =>
      run(command, ["-c", conf, ...args], { timeout: COMMAND_TIMEOUT_MS }).catch((error: unknown) => {
        throw new Error(`${command} ${args.join(" ")} failed: ${(error as { stderr?: string }).stderr || String(error)}`);
      });
    /**
     * The `ceph` CLI of Ceph 16 can ask the monitor for its command list before it has received the monitor map, and so
     * sends a zero fsid, which the monitor refuses (its log: "handle_command on fsid 0000… != …"; the CLI: "Error EPERM:
     * problem getting command descriptions"). Nothing was done by the monitor then, so the command is sent again. With
     * authentication off, EPERM has no other cause; any other failure is final.
     */
    const ceph = (args: string[]) =>
      eventually(`ceph ${args.join(" ")}`, () => tool("ceph", ["--connect-timeout", "30", ...args]), {
        timeoutMs: READY_HANG_MS,
        intervalMs: 200,
        stopWhen: (error) => !isZeroFsidRefusal(error),
      });
    const daemon = (name: string, command: string, args: string[]) => {
      // -f: in the foreground, so that the process is this child and stop() can kill it.
      const child = spawn(command, ["-f", "-c", conf, ...args], { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
      const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
      child.once("error", () => undefined); // a missing binary: reported by the checks below, as the process is gone
      const entry = { name, child, exited, stderr: () => stderr };
      daemons.push(entry);
      return entry;
    };
    /** Fails at once when a daemon has exited: waiting cannot cure that. */
    const assertAlive = () => {
      const gone = daemons.find((entry) => entry.child.exitCode !== null || entry.child.signalCode !== null);
      if (gone) throw Object.assign(new Error(`${gone.name} exited (${gone.child.exitCode ?? gone.child.signalCode})`), { fatal: true });
    };
    const stopWhen = (error: unknown) => (error as { fatal?: boolean }).fatal === true;

    await tool("monmaptool", ["--create", "--fsid", fsid, "--addv", "a", `[v1:127.0.0.1:${monPort}]`, path.join(folder, "monmap")]);
    await tool("ceph-mon", ["--mkfs", "-i", "a", "--monmap", path.join(folder, "monmap")]);
    daemon("ceph-mon", "ceph-mon", ["-i", "a"]);
    await eventually(
      "the Ceph monitor to answer",
      async () => {
        assertAlive();
        await ceph(["mon", "stat"]);
      },
      { timeoutMs: READY_HANG_MS, intervalMs: 200, stopWhen },
    );

    const osdUuid = randomUUID();
    const osdId = (await ceph(["osd", "new", osdUuid])).stdout.trim();
    await ceph(["osd", "crush", "add", `osd.${osdId}`, "1", "root=default"]);
    await tool("ceph-osd", ["-i", osdId, "--mkfs", "--osd-uuid", osdUuid]);
    daemon("ceph-osd", "ceph-osd", ["-i", osdId]);
    daemon("radosgw", "radosgw", ["-n", "client.rgw.cairn"]);
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    // The gateway listens once it has created its pools, which needs the OSD up.
    await eventually(
      "the RADOS Gateway to answer HTTP",
      async () => {
        assertAlive();
        await fetch(endpoint, { signal: AbortSignal.timeout(5000) });
      },
      { timeoutMs: READY_HANG_MS, intervalMs: 200, stopWhen },
    );

    const accessKeyId = "CAIRNOBJECTLOCK";
    const secretAccessKey = randomUUID();
    await tool("radosgw-admin", [
      "user",
      "create",
      "--uid",
      "cairn",
      "--display-name",
      "Cairn tests",
      "--access-key",
      accessKeyId,
      "--secret-key",
      secretAccessKey,
    ]);
    client = new S3Client({
      endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId, secretAccessKey },
    });
    const s3 = client;
    await eventually(
      `the bucket ${bucket} to be created with Object Lock on`,
      async () => {
        assertAlive();
        await s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
      },
      {
        timeoutMs: READY_HANG_MS,
        intervalMs: 200,
        // A refused name or a bucket already there will not change by waiting.
        stopWhen: (error) =>
          stopWhen(error) || [400, 409].includes((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 0),
      },
    );
    client.destroy();
    client = undefined;
    return { endpoint, accessKeyId, secretAccessKey, bucket, stop };
  } catch (error) {
    const logs = await logTails();
    await stop();
    throw new Error(
      `the one-node Ceph with a RADOS Gateway did not start: ${(error as Error).name}: ${(error as Error).message}\n${logs}`,
      { cause: error },
    );
  }
}
