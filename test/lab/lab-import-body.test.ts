/**
 * The end of an upload body (`PUT /import`, `PUT /import_raw_vdi`) as the lab sees it: a complete body is accepted even
 * when its last bytes arrive while the lab is busy and the client then half-closes (XAPI's 1 PiB Content-Length convention,
 * as Cairn's uploads do it); a body cut anywhere, or an upload the client resets, is rejected and leaves nothing behind.
 *
 * Deterministic: the lab is held inside a disk write (a spy) while the last bytes and the client's FIN reach it, and let go
 * once the connection has closed, which is the moment Node's HTTP server drops a request it considers aborted.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Xapi } from "xen-api";
import { skipReasonForTools } from "../support/system-tools.js";
import { createLabFixture, diskOf, objectsOfType, readAll, vmNamed, type LabFixture } from "./lab-fixture.js";

/** XAPI's Content-Length for a body of unknown length: the client ends it by closing its side. */
const UNKNOWN_LENGTH = "1125899906842624";
const MiB = 1024 * 1024;

describe("the lab's import bodies", () => {
  let fixture: LabFixture;
  let xapi: Xapi;
  beforeEach(async () => {
    fixture = await createLabFixture();
    xapi = await fixture.connect();
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await fixture.dispose();
  });

  /** A plain XVA export of `win-fat` (8 MiB disk: its last 1 MiB chunk is always written), and that disk's hash. */
  async function exportXva(): Promise<{ xva: Buffer; hash: string }> {
    const vm = vmNamed(xapi, "win-fat");
    const response = await xapi.getResource("/export/", { query: { ref: vm.$ref } });
    const xva = await readAll(response.body);
    await response.task;
    expect(
      xva.subarray(-1024).every((byte) => byte === 0),
      "an XVA ends with two zero tar blocks",
    ).toBe(true);
    return { xva, hash: String(await xapi.call("lab.vdi_sha256", diskOf(xapi, vm))) };
  }

  /** A PUT with the 1 PiB Content-Length, under a task of ours, on a raw socket (the test decides when and how it ends). */
  async function openUpload(
    path: string,
    query: Record<string, string>,
  ): Promise<{ socket: Socket; task: string; closed: Promise<unknown> }> {
    const task = await xapi.createTask("lab import body test");
    const search = new URLSearchParams({ ...query, session_id: xapi.sessionId, task_id: task });
    const socket = connect(fixture.lab.port, "127.0.0.1");
    socket.on("error", () => undefined); // a reset by the lab after it failed the task: the task says what happened
    socket.resume(); // the lab's early 200 and whatever follows
    const closed = once(socket, "close");
    await once(socket, "connect");
    socket.write(`PUT ${path}?${search} HTTP/1.1\r\nHost: lab\r\nContent-Length: ${UNKNOWN_LENGTH}\r\n\r\n`);
    return { socket, task, closed };
  }

  /** Holds the lab inside its first disk write that matches, until `release()`; `reached` resolves when it is held there. */
  function holdDiskWrite(matches: (offset: number, data: Buffer) => boolean): { reached: Promise<void>; release(): void } {
    const disks = fixture.lab.pool.disks;
    const write = disks.write.bind(disks);
    let reach!: () => void;
    let release!: () => void;
    const reached = new Promise<void>((resolve) => (reach = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    let held = false;
    vi.spyOn(disks, "write").mockImplementation(async (id, offset, data) => {
      if (!held && matches(offset, data)) {
        held = true;
        reach();
        await released;
      }
      return write(id, offset, data);
    });
    return { reached, release };
  }

  async function inventory(): Promise<{ vms: number; vdis: number }> {
    await xapi.barrier();
    return { vms: objectsOfType(xapi, "VM").length, vdis: objectsOfType(xapi, "VDI").length };
  }

  it("accepts a complete XVA whose tar trailer and the client's FIN arrive while the lab is still writing the last chunk", async () => {
    const { xva, hash } = await exportXva();
    const last = holdDiskWrite((offset, data) => offset + data.length === 8 * MiB);
    const { socket, task, closed } = await openUpload("/import/", { sr_id: xapi.pool.default_SR as string });
    const result = xapi.watchTask<string>(task);
    result.catch(() => undefined);
    socket.write(xva.subarray(0, -1024));
    await last.reached;
    // The trailer waits unread in the request while the lab is held; then the FIN: Node's server drops the request.
    socket.end(xva.subarray(-1024));
    await closed;
    last.release();

    const refs = String(await result).match(/OpaqueRef:[A-Za-z0-9-]+/g) ?? [];
    expect(refs).toHaveLength(1);
    await xapi.barrier();
    const copy = xapi.getObjectByRef(String(refs[0]));
    expect(copy).toMatchObject({ name_label: "win-fat", power_state: "Halted", current_operations: {} });
    expect(await xapi.call("lab.vdi_sha256", diskOf(xapi, copy))).toBe(hash);
  });

  for (const [what, cut] of [
    ["in the middle of a chunk", (xva: Buffer) => xva.subarray(0, Math.floor(xva.length / 2))],
    ["before its tar trailer", (xva: Buffer) => xva.subarray(0, -1024)],
    ["before the trailer's second zero block", (xva: Buffer) => xva.subarray(0, -512)],
  ] as const) {
    it(`rejects an XVA cut ${what} (the client half-closes) with IMPORT_ERROR_PREMATURE_EOF and leaves no VM or VDI`, async () => {
      const { xva } = await exportXva();
      const before = await inventory();
      const { socket, task, closed } = await openUpload("/import/", { sr_id: xapi.pool.default_SR as string });
      const result = xapi.watchTask(task);
      result.catch(() => undefined);
      socket.end(cut(xva));
      await expect(result).rejects.toMatchObject({ code: "IMPORT_ERROR_PREMATURE_EOF" });
      await closed;
      expect(await inventory()).toEqual(before);
    });
  }

  for (const compression of ["gzip", "zstd"] as const) {
    it.skipIf(compression === "zstd" && skipReasonForTools(["zstd"]))(
      `rejects a ${compression} XVA whose compressed stream stops short, though the tar inside is already complete`,
      async () => {
        const vm = vmNamed(xapi, "win-fat");
        const response = await xapi.getResource("/export/", { query: { ref: vm.$ref, use_compression: compression } });
        const xva = await readAll(response.body);
        await response.task;
        const before = await inventory();
        const { socket, task, closed } = await openUpload("/import/", { sr_id: xapi.pool.default_SR as string });
        const result = xapi.watchTask(task);
        result.catch(() => undefined);
        socket.end(xva.subarray(0, -4)); // gzip's ISIZE, zstd's content checksum: every byte of the tar is out before them
        await expect(result).rejects.toMatchObject({ code: "IMPORT_ERROR_PREMATURE_EOF" });
        await closed;
        expect(await inventory()).toEqual(before);
      },
    );
  }

  it("rejects an XVA upload the client resets before its end, and leaves no VM or VDI", async () => {
    const { xva } = await exportXva();
    const before = await inventory();
    // Held at its first chunk, then the client resets the connection with the last chunk partly sent.
    const first = holdDiskWrite((offset) => offset === 0);
    const { socket, task } = await openUpload("/import/", { sr_id: xapi.pool.default_SR as string });
    const result = xapi.watchTask(task);
    result.catch(() => undefined);
    socket.write(xva.subarray(0, xva.length - 1024 - 100_000));
    await first.reached;
    socket.resetAndDestroy();
    first.release();
    await expect(result).rejects.toMatchObject({ code: "IMPORT_ERROR_PREMATURE_EOF" });
    expect(await inventory()).toEqual(before);
  });

  it("accepts a complete raw /import_raw_vdi body whose last bytes and FIN arrive while the lab is writing, and rejects a short one", async () => {
    const size = 2 * MiB + 4096;
    const vdi = await xapi.callAsync<string>("VDI.create", {
      name_label: "raw target",
      SR: xapi.pool.default_SR,
      virtual_size: size,
      type: "user",
      sharable: false,
      read_only: false,
      other_config: {},
    });
    const body = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) body.writeUInt32BE(i, i);

    const first = holdDiskWrite((offset) => offset === 0);
    const upload = await openUpload("/import_raw_vdi/", { vdi, format: "raw" });
    const result = xapi.watchTask(upload.task);
    result.catch(() => undefined);
    upload.socket.write(body.subarray(0, 2 * MiB));
    await first.reached;
    upload.socket.end(body.subarray(2 * MiB));
    await upload.closed;
    first.release();
    await expect(result).resolves.toBe(vdi);
    expect(Buffer.from(String(await xapi.call("lab.read_vdi", vdi, 0, size)), "base64").equals(body)).toBe(true);

    const short = await openUpload("/import_raw_vdi/", { vdi, format: "raw" });
    const failed = xapi.watchTask(short.task);
    failed.catch(() => undefined);
    short.socket.end(body.subarray(0, size - 1));
    await expect(failed).rejects.toMatchObject({ code: "VDI_IO_ERROR" });
  });
});
