/**
 * `GET /export_raw_vdi` failures XAPI reports only after its 200 headers (export_raw_vdi.ml `localhost_handler`,
 * vhd_tool_wrapper.ml `send`): the client reads an empty, close-delimited body and the task says why.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Xapi } from "xen-api";
import { createLabFixture, objectsOfType, readAll, type LabFixture } from "./lab-fixture.js";

describe("the lab's late export failures", () => {
  let fixture: LabFixture;
  let xapi: Xapi;
  beforeAll(async () => {
    fixture = await createLabFixture();
    xapi = await fixture.connect();
  });
  afterAll(async () => {
    await fixture?.dispose();
  });

  async function exportOf(query: Record<string, string>): Promise<{ status: number; bytes: number; task: Promise<unknown> }> {
    const response = await xapi.getResource("/export_raw_vdi/", { query });
    const bytes = (await readAll(response.body)).length;
    return { status: response.statusCode, bytes, task: response.task as Promise<unknown> };
  }

  it("base= on a disk that is not a VHD (sm_config type=raw): 200, empty body, INTERNAL_ERROR Failure(Cannot compute differences on non-VHD images)", async () => {
    const sr = objectsOfType(xapi, "SR").find((record) => record.name_label === "Second storage")!.$ref;
    const raw = await xapi.callAsync<string>("VDI.create", {
      name_label: "raw LV",
      SR: sr,
      virtual_size: 4 * 1024 * 1024,
      type: "user",
      sharable: false,
      read_only: false,
      other_config: {},
      xenstore_data: {},
      sm_config: { type: "raw" },
      tags: [],
    });
    const base = await xapi.callAsync<string>("VDI.snapshot", raw, {});
    const answer = await exportOf({ vdi: raw, base, format: "vhd" });
    expect(answer).toMatchObject({ status: 200, bytes: 0 });
    await expect(answer.task).rejects.toMatchObject({
      code: "INTERNAL_ERROR",
      params: ['Failure("Cannot compute differences on non-VHD images")'],
    });
    // Without base the same disk exports (a raw source turned into a VHD).
    const full = await exportOf({ vdi: raw, format: "vhd" });
    await full.task;
    expect(full.bytes).toBeGreaterThan(0);
  });

  it("format=vhd of a disk above 2040 GiB: 200, empty body, VDI_TOO_LARGE [vdi, 2040 GiB]", async () => {
    const vdi = await xapi.callAsync<string>("VDI.create", {
      name_label: "huge",
      SR: xapi.pool.default_SR,
      virtual_size: 2041 * 1024 ** 3,
      type: "user",
      sharable: false,
      read_only: false,
      other_config: {},
      xenstore_data: {},
      sm_config: {},
      tags: [],
    });
    const answer = await exportOf({ vdi, format: "vhd" });
    expect(answer).toMatchObject({ status: 200, bytes: 0 });
    await expect(answer.task).rejects.toMatchObject({ code: "VDI_TOO_LARGE", params: [vdi, String(2040 * 1024 ** 3)] });
  });
});
