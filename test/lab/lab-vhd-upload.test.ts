/**
 * `PUT /import_raw_vdi?format=vhd` as XAPI receives it (import_raw_vdi.ml → vhd_tool_wrapper.ml `receive` → vhd-tool
 * `serve --destination-size <Content-Length>` → ocaml-vhd `From_input.openstream (Some size)`): the trailing footer is read
 * at the last sector below Content-Length, so only the exact length of the VHD succeeds; a chunked VHD is refused.
 */
import { once } from "node:events";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Xapi } from "xen-api";
import { createLabFixture, diskOf, readAll, vmNamed, type LabFixture } from "./lab-fixture.js";

const UNKNOWN_LENGTH = "1125899906842624";

describe("the lab's /import_raw_vdi?format=vhd takes Content-Length as vhd-tool's destination size", () => {
  let fixture: LabFixture;
  let xapi: Xapi;
  let source: string;
  let base: string;
  let delta: Buffer;
  const logged: string[] = [];

  beforeAll(async () => {
    fixture = await createLabFixture({ log: (message) => logged.push(message) });
    xapi = await fixture.connect();
    source = diskOf(xapi, vmNamed(xapi, "db-data"));
    base = await xapi.callAsync<string>("VDI.snapshot", source, {});
    await xapi.call("lab.scribble", source, 3, "vhd-upload");
    delta = await readAll((await xapi.getResource("/export_raw_vdi/", { query: { vdi: source, base, format: "vhd" } })).body);
  });
  afterAll(async () => {
    await fixture?.dispose();
  });

  async function target(): Promise<string> {
    return xapi.callAsync<string>("VDI.clone", base, {});
  }

  /** A PUT on a raw socket with the given Content-Length header; sends `body` then half-closes. @returns the task's outcome. */
  async function put(query: Record<string, string>, headers: string, body: Buffer): Promise<{ status: string; result: Promise<unknown> }> {
    const task = await xapi.createTask("vhd upload test");
    const result = xapi.watchTask(task);
    result.catch(() => undefined);
    const search = new URLSearchParams({ ...query, session_id: xapi.sessionId, task_id: task });
    const socket = connect(fixture.lab.port, "127.0.0.1");
    socket.on("error", () => undefined);
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    const closed = new Promise((resolve) => socket.once("close", resolve)); // not once(): an EPIPE (refused early) is expected
    await once(socket, "connect");
    socket.write(`PUT /import_raw_vdi/?${search} HTTP/1.1\r\nHost: lab\r\n${headers}\r\n`);
    socket.end(body);
    await closed;
    return { status: Buffer.concat(chunks).toString("latin1").split("\r\n")[0], result };
  }

  it("applies a differencing VHD sent with its exact Content-Length", async () => {
    const vdi = await target();
    const { status, result } = await put({ vdi, format: "vhd" }, `Content-Length: ${delta.length}\r\n`, delta);
    expect(status).toBe("HTTP/1.1 200 OK");
    await expect(result).resolves.toBe(vdi);
    expect(await xapi.call("lab.vdi_sha256", vdi)).toBe(await xapi.call("lab.vdi_sha256", source));
  });

  it("fails VDI_IO_ERROR [Device I/O errors] with XAPI's 1 PiB Content-Length: vhd-tool looks for the footer 1 PiB in", async () => {
    const vdi = await target();
    const { result } = await put({ vdi, format: "vhd" }, `Content-Length: ${UNKNOWN_LENGTH}\r\n`, delta);
    await expect(result).rejects.toMatchObject({ code: "VDI_IO_ERROR", params: ["Device I/O errors"] });
    expect(logged.at(-1)).toMatch(/End_of_file reading the trailing footer/);
  });

  it("fails with a Content-Length short of the VHD (the footer's place is behind what was read) and with a bad footer", async () => {
    const short = await put({ vdi: await target(), format: "vhd" }, `Content-Length: ${delta.length - 512}\r\n`, delta);
    await expect(short.result).rejects.toMatchObject({ code: "VDI_IO_ERROR" });
    const damaged = Buffer.from(delta);
    damaged[damaged.length - 512 + 70] ^= 0xff; // the trailing footer's uid: its checksum no longer matches
    const bad = await put({ vdi: await target(), format: "vhd" }, `Content-Length: ${damaged.length}\r\n`, damaged);
    await expect(bad.result).rejects.toMatchObject({ code: "VDI_IO_ERROR" });
    expect(logged.at(-1)).toMatch(/trailing footer: Invalid checksum/);
  });

  it("refuses a chunked VHD before the body: 404, INTERNAL_ERROR [Cannot handle chunked VHD] / [Cannot handle encoding: chunked]", async () => {
    const byQuery = await put({ vdi: await target(), format: "vhd", chunked: "true" }, `Content-Length: ${delta.length}\r\n`, delta);
    expect(byQuery.status).toBe("HTTP/1.1 404 Not Found");
    await expect(byQuery.result).rejects.toMatchObject({ code: "INTERNAL_ERROR", params: ["Cannot handle chunked VHD"] });
    const byEncoding = await put({ vdi: await target(), format: "vhd" }, "Transfer-Encoding: chunked\r\n", Buffer.from("0\r\n\r\n"));
    expect(byEncoding.status).toBe("HTTP/1.1 404 Not Found");
    await expect(byEncoding.result).rejects.toMatchObject({ code: "INTERNAL_ERROR", params: ["Cannot handle encoding: chunked"] });
  });
});
