import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, chown, mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { type AddressInfo, type Server, type Socket, createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRemote } from "../../server/remotes/create-remote.js";
import { NfsRemote, type NfsRemoteOptions } from "../../server/remotes/nfs-remote.js";
import { PORTMAP_PROGRAM, getPort } from "../../server/remotes/nfs/nfs3.js";
import { describeRemoteConformance, expectRemoteError } from "./conformance.js";
import { type GaneshaPeer, ganeshaSkipReason, startGanesha } from "./ganesha-process.js";
import { digestStream, testSource } from "./test-source.js";

const run = promisify(execFile);
const skipReason = ganeshaSkipReason();
const MIB = 1024 * 1024;

function optionsFor(peer: GaneshaPeer, extra: Partial<NfsRemoteOptions> = {}): NfsRemoteOptions {
  return { host: peer.host, port: peer.nfsPort, mountPort: peer.mountPort, exportPath: peer.exportPath, ...extra };
}

/** The libnfs URL of a file on the peer's export (libnfs-utils: an NFS client independent of ours). */
function libnfsUrl(peer: GaneshaPeer, path: string, exportPath = peer.exportPath): string {
  return `nfs://127.0.0.1${exportPath}/${path}?nfsport=${peer.nfsPort}&mountport=${peer.mountPort}`;
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A TCP relay in front of a port, whose connections the test can cut. */
async function startRelay(port: number): Promise<{ port: number; cut(): void; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect({ host: "127.0.0.1", port });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    cut() {
      for (const socket of sockets) socket.destroy();
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Splits a byte stream into RPC records (RFC 5531 record marking, single-fragment records as both sides send them). */
function recordSplitter(onRecord: (record: Buffer) => void): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 4) {
      const length = pending.readUInt32BE(0) & 0x7fffffff;
      if (pending.length < 4 + length) return;
      onRecord(pending.subarray(4, 4 + length));
      pending = pending.subarray(4 + length);
    }
  };
}

function withMark(record: Buffer): Buffer {
  const mark = Buffer.alloc(4);
  mark.writeUInt32BE((0x80000000 | record.length) >>> 0, 0);
  return Buffer.concat([mark, record]);
}

/**
 * A relay in front of the NFS port that reads the RPC calls going by (WRITE's stable_how and count) and can change the write
 * verifier in COMMIT replies, as a server that restarted between the WRITEs and the COMMIT would answer.
 */
async function startVerifierRelay(port: number) {
  const seen = { unstableBytes: 0, fileSyncBytes: 0, commits: 0 };
  let commitsToFalsify = 0;
  const server = createServer((client) => {
    const upstream = connect({ host: "127.0.0.1", port });
    const procedures = new Map<number, number>();
    client.on(
      "data",
      recordSplitter((record) => {
        const xid = record.readUInt32BE(0);
        const procedure = record.readUInt32BE(20);
        procedures.set(xid, procedure);
        if (procedure === 7) {
          const credentialEnd = 32 + Math.ceil(record.readUInt32BE(28) / 4) * 4;
          const argumentsStart = credentialEnd + 8 + Math.ceil(record.readUInt32BE(credentialEnd + 4) / 4) * 4;
          const handleEnd = argumentsStart + 4 + Math.ceil(record.readUInt32BE(argumentsStart) / 4) * 4;
          const count = record.readUInt32BE(handleEnd + 8);
          const stable = record.readUInt32BE(handleEnd + 12);
          if (stable === 0) seen.unstableBytes += count;
          else seen.fileSyncBytes += count;
        }
        upstream.write(withMark(record));
      }),
    );
    upstream.on(
      "data",
      recordSplitter((record) => {
        const xid = record.readUInt32BE(0);
        if (procedures.get(xid) === 21) {
          seen.commits += 1;
          // COMMIT3resok ends with the verifier.
          if (commitsToFalsify > 0) {
            commitsToFalsify -= 1;
            for (let at = record.length - 8; at < record.length; at++) record[at] ^= 0xff;
          }
        }
        procedures.delete(xid);
        client.write(withMark(record));
      }),
    );
    for (const socket of [client, upstream]) socket.on("error", () => undefined);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    falsifyNextCommits(count: number) {
      commitsToFalsify = count;
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe.skipIf(skipReason !== undefined)("NFS remote against nfs-ganesha", () => {
  describeRemoteConformance("NFS", { exclusiveCreateIsAtomic: true }, async () => {
    const peer = await startGanesha();
    // Built from a stored configuration, as the server builds it.
    const make = () => createRemote({ kind: "NFS", location: peer.location, options: peer.options });
    return { remote: make(), twin: make, dispose: () => peer.stop() };
  });

  describe("NFS remote: data through an independent client and on the server's disk", () => {
    let peer: GaneshaPeer;
    let remote: NfsRemote;
    let scratch: string;
    beforeAll(async () => {
      peer = await startGanesha();
      remote = new NfsRemote(optionsFor(peer));
      scratch = join(tmpdir(), `cairn-nfs-test-${randomBytes(4).toString("hex")}`);
      await mkdir(scratch);
    });
    afterAll(async () => {
      await remote?.close();
      await peer?.stop();
      if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
    });

    it("writes 64 MiB and an odd tail byte-exact, as nfs-cp and the exported folder read it", async () => {
      const size = 64 * MIB + 12_345;
      const source = testSource(size);
      const { bytes } = await remote.writeStream("large/disk.vhd", source.stream);
      expect(bytes).toBe(size);
      const expected = source.digest().toString("hex");
      const onDisk = await readFile(join(peer.folder, "large", "disk.vhd"));
      expect(onDisk.length).toBe(size);
      expect(sha256(onDisk)).toBe(expected);
      const copy = join(scratch, "copy.vhd");
      await run("nfs-cp", [libnfsUrl(peer, "large/disk.vhd"), copy]);
      expect(sha256(await readFile(copy))).toBe(expected);
      const read = await digestStream(await remote.createReadStream("large/disk.vhd"));
      expect(read.bytes).toBe(size);
      expect(read.digest.toString("hex")).toBe(expected);
      expect(await readdir(join(peer.folder, "large"))).toEqual(["disk.vhd"]);
    }, 180_000);

    it("reads byte-exact what nfs-cp wrote", async () => {
      const content = randomBytes(5 * MIB + 7);
      await writeFile(join(scratch, "from-libnfs.bin"), content);
      await remote.mkdir("incoming");
      await run("nfs-cp", [join(scratch, "from-libnfs.bin"), libnfsUrl(peer, "incoming/from-libnfs.bin")]);
      expect((await remote.readFile("incoming/from-libnfs.bin")).equals(content)).toBe(true);
      const file = await remote.openRandomAccess("incoming/from-libnfs.bin");
      expect((await file.read(3 * MIB - 1, 2 * MIB + 8)).equals(content.subarray(3 * MIB - 1))).toBe(true);
      await file.close();
    });

    it("updates a file in place: writes at offsets and past the end, truncates, syncs; the server's disk agrees", async () => {
      const content = randomBytes(4 * MIB + 1);
      await remote.writeFile("update/parent.vhd", content);
      const file = await remote.openForUpdate("update/parent.vhd");
      try {
        // Writes overlapping the one before, each resolved once sent (not yet answered): the later one must win.
        const blocks = Array.from({ length: 16 }, (_, index) => ({ offset: index * 200_000 + 3, data: randomBytes(300_000) }));
        for (const block of blocks) await file.write(block.offset, block.data);
        await file.write(10, Buffer.from("first"));
        await file.write(10, Buffer.from("again"));
        for (const block of blocks) block.data.copy(content, block.offset);
        Buffer.from("again").copy(content, 10);
        const beyond = randomBytes(1000);
        await file.write(6 * MIB, beyond);
        expect(file.size).toBe(6 * MIB + 1000);
        expect((await file.read(4 * MIB + 1, 10)).equals(Buffer.alloc(10))).toBe(true);
        await file.sync();
        const expected = Buffer.concat([content, Buffer.alloc(6 * MIB - content.length), beyond]);
        expect((await readFile(join(peer.folder, "update", "parent.vhd"))).equals(expected)).toBe(true);
        await file.truncate(MIB + 5);
        await file.write(MIB + 5, Buffer.from("tail"));
        await file.sync();
        const cut = Buffer.concat([expected.subarray(0, MIB + 5), Buffer.from("tail")]);
        expect((await readFile(join(peer.folder, "update", "parent.vhd"))).equals(cut)).toBe(true);
        const copy = join(scratch, "updated.vhd");
        await run("nfs-cp", [libnfsUrl(peer, "update/parent.vhd"), copy]);
        expect((await readFile(copy)).equals(cut)).toBe(true);
      } finally {
        await file.close();
      }
    });

    it("reports the export's space from FSSTAT", async () => {
      const space = await remote.spaceInfo();
      expect(space.totalBytes).toBeGreaterThan(0);
      expect(space.freeBytes).toBeGreaterThan(0);
      expect(space.freeBytes as number).toBeLessThanOrEqual(space.totalBytes as number);
      expect(space.usedBytes).toBeGreaterThanOrEqual(0);
    });

    it("creates files and folders the server's owner can use (mode 0644 and 0755)", async () => {
      await remote.writeFile("modes/a/file.txt", "x");
      expect((await stat(join(peer.folder, "modes", "a", "file.txt"))).mode & 0o777).toBe(0o644);
      expect((await stat(join(peer.folder, "modes", "a"))).mode & 0o777).toBe(0o755);
      expect(await remote.writeFileExclusive("modes/lock", "owner")).toBe(true);
      expect((await stat(join(peer.folder, "modes", "lock"))).mode & 0o777).toBe(0o644);
    });
  });

  describe("NFS remote: locations, ports and errors", () => {
    let peer: GaneshaPeer;
    beforeAll(async () => {
      peer = await startGanesha();
    });
    afterAll(async () => {
      await peer?.stop();
    });

    it("opens a folder inside the export named in the location, and says NOT_FOUND when it is missing", async () => {
      await mkdir(join(peer.folder, "site", "cairn"), { recursive: true });
      const inside = createRemote({ kind: "NFS", location: `${peer.location}/site/cairn`, options: peer.options });
      await inside.writeFile("hello.txt", "inside");
      expect(await readFile(join(peer.folder, "site", "cairn", "hello.txt"), "utf8")).toBe("inside");
      await inside.close();
      const missing = createRemote({ kind: "NFS", location: `${peer.location}/site/nowhere`, options: peer.options });
      const error = await expectRemoteError(missing.open(), "NOT_FOUND");
      expect(error.message).toContain(`NFS remote "nfs://127.0.0.1:${peer.nfsPort}/export/site/nowhere"`);
    });

    it("says PERMISSION_DENIED, with how to list the exports, for an export the server does not have", async () => {
      // ganesha (as Linux's mountd) answers MNT3ERR_ACCES for a path it does not export: it cannot be told from a refusal.
      const remote = createRemote({ kind: "NFS", location: `nfs://127.0.0.1:${peer.nfsPort}/no-such-export`, options: peer.options });
      const error = await expectRemoteError(remote.open(), "PERMISSION_DENIED");
      expect(error.message).toContain("showmount -e");
      expect(error.message).toContain("127.0.0.1");
    });

    it("says PERMISSION_DENIED for a read-only export, at open and before any write", async () => {
      const remote = createRemote({ kind: "NFS", location: peer.readOnlyLocation, options: peer.options });
      const error = await expectRemoteError(remote.open(), "PERMISSION_DENIED");
      expect(error.message).toContain("read-only");
      expect(error.transient).toBe(false);
    });

    it("says PERMISSION_DENIED when the uid may not write, naming the path", async () => {
      // A folder the uid 65534 owns, holding one only root may write.
      await mkdir(join(peer.folder, "nobody", "locked"), { recursive: true });
      await chown(join(peer.folder, "nobody"), 65_534, 65_534);
      await chmod(join(peer.folder, "nobody", "locked"), 0o755);
      const options = { ...peer.options, uid: 65_534, gid: 65_534 };
      const remote = createRemote({ kind: "NFS", location: `${peer.location}/nobody`, options });
      await remote.writeFile("mine.txt", "allowed");
      const error = await expectRemoteError(remote.writeFile("locked/theirs.txt", "refused"), "PERMISSION_DENIED");
      expect(error.message).toContain("locked/theirs.txt");
      expect(error.message).toContain("options.uid");
      expect(await readdir(join(peer.folder, "nobody", "locked"))).toEqual([]);
      await remote.close();
      const locked = createRemote({ kind: "NFS", location: `${peer.location}/nobody/locked`, options });
      await expectRemoteError(locked.open(), "PERMISSION_DENIED");
    });

    it("says UNREACHABLE, transient, when nothing listens on the port", async () => {
      const closed = await new Promise<number>((resolve) => {
        const server = createServer();
        server.listen(0, "127.0.0.1", () => {
          const { port } = server.address() as AddressInfo;
          server.close(() => resolve(port));
        });
      });
      const remote = new NfsRemote(optionsFor(peer, { mountPort: closed }));
      const error = await expectRemoteError(remote.open(), "UNREACHABLE");
      expect(error.transient).toBe(true);
      expect(error.message).toContain('NFS remote "nfs://127.0.0.1');
    });

    it("says UNREACHABLE, transient, when the server accepts but never answers, within the time limit", async () => {
      // Reads and drops what it is sent (a socket never read would not see the client's close, and close() would wait).
      const silent = createServer((socket) => socket.on("error", () => undefined).resume());
      await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
      try {
        const port = (silent.address() as AddressInfo).port;
        const remote = new NfsRemote(optionsFor(peer, { mountPort: port, timeoutMs: 500 }));
        const error = await expectRemoteError(remote.open(), "UNREACHABLE");
        expect(error.transient).toBe(true);
        expect(error.message).toContain("500 ms");
      } finally {
        await new Promise<void>((resolve) => silent.close(() => resolve()));
      }
    });

    it("says INVALID_CONFIG when the port serves another RPC program", async () => {
      // The MOUNT port given as the NFS port: the server there does not serve NFS.
      const remote = new NfsRemote(optionsFor(peer, { port: peer.mountPort }));
      const error = await expectRemoteError(remote.open(), "INVALID_CONFIG");
      expect(error.message).toContain("NFS version 3");
    });

    it("connects again after the connection is cut, failing only the calls in flight", async () => {
      const relay = await startRelay(peer.nfsPort);
      const remote = new NfsRemote(optionsFor(peer, { port: relay.port }));
      try {
        await remote.writeFile("relay/before.txt", "before");
        relay.cut();
        // The cut may be seen by this call (UNREACHABLE, transient) or only by the socket before it: either way the next works.
        await remote.readFile("relay/before.txt").catch((error: { code?: string; transient?: boolean }) => {
          expect(error.code).toBe("UNREACHABLE");
          expect(error.transient).toBe(true);
        });
        await remote.writeFile("relay/after.txt", "after");
        expect((await remote.readFile("relay/after.txt")).toString()).toBe("after");
      } finally {
        await remote.close();
        await relay.stop();
      }
    });

    it("sends again, FILE_SYNC, what a COMMIT with a changed verifier says the server may have lost", async () => {
      const relay = await startVerifierRelay(peer.nfsPort);
      const remote = new NfsRemote(optionsFor(peer, { port: relay.port }));
      try {
        await remote.mkdir("verifier");
        // 20 MiB: the stream COMMITs on its own at 16 MiB (that answer is falsified), then at its end.
        relay.falsifyNextCommits(1);
        const source = testSource(20 * MIB);
        await remote.writeStream("verifier/disk.vhd", source.stream);
        expect(relay.seen.commits).toBe(2);
        expect(relay.seen.unstableBytes).toBe(20 * MIB);
        expect(relay.seen.fileSyncBytes).toBe(16 * MIB);
        expect(sha256(await readFile(join(peer.folder, "verifier", "disk.vhd")))).toBe(source.digest().toString("hex"));
        // A file open for update: its sync resends what the falsified COMMIT covered, and nothing when the verifier holds.
        const file = await remote.openForUpdate("verifier/disk.vhd");
        await file.write(MIB, Buffer.alloc(300_000, 7));
        relay.falsifyNextCommits(1);
        await file.sync();
        expect(relay.seen.fileSyncBytes).toBe(16 * MIB + 300_000);
        await file.write(2 * MIB, Buffer.alloc(1000, 8));
        await file.sync();
        expect(relay.seen.fileSyncBytes).toBe(16 * MIB + 300_000);
        await file.close();
        const onDisk = await readFile(join(peer.folder, "verifier", "disk.vhd"));
        expect(onDisk.subarray(MIB, MIB + 300_000).equals(Buffer.alloc(300_000, 7))).toBe(true);
        expect(onDisk.subarray(2 * MIB, 2 * MIB + 1000).equals(Buffer.alloc(1000, 8))).toBe(true);
      } finally {
        await remote.close();
        await relay.stop();
      }
    });

    it("asks the portmapper for a program's port (PORTMAP GETPORT)", async () => {
      // rpcbind registers itself. NFS's own registration is not asked for: the ganesha instances of parallel test files
      // register and unregister it (last wins, and one stopping removes it for all), so its answer depends on timing.
      expect(await getPort("127.0.0.1", PORTMAP_PROGRAM, 2, 5000)).toBe(111);
      // A program nobody registered: port 0, as RFC 1833 says, not an error.
      expect(await getPort("127.0.0.1", 0x20_00_c4_1e, 1, 5000)).toBe(0);
    });

    it("removes the temporary file of a failed write from the server.s disk", async () => {
      const remote = new NfsRemote(optionsFor(peer));
      const source = testSource(3 * MIB, { failAt: 2 * MIB });
      await expect(remote.writeStream("failed/disk.vhd", source.stream)).rejects.toThrow("failed on purpose");
      expect(await readdir(join(peer.folder, "failed"))).toEqual([]);
      await remote.close();
    });
  });
});
