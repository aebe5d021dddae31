import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLabFixture, diskOf, readAll, vmNamed, type LabFixture } from "./lab-fixture.js";

describe("the lab under concurrent load", () => {
  let fixture: LabFixture;
  beforeEach(async () => {
    fixture = await createLabFixture();
  });
  afterEach(async () => {
    await fixture.dispose();
  });

  it("serves 20 concurrent exports and event watchers without leaking tasks or current operations", async () => {
    const xapi = await fixture.connect();
    const watchers = await Promise.all(Array.from({ length: 5 }, () => fixture.connect()));
    const vdi = diskOf(xapi, vmNamed(xapi, "db-data"));
    const expected = await xapi.call<string>("lab.vdi_sha256", vdi);
    const heapBefore = process.memoryUsage().heapUsed;
    const exports = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const client = i % 2 === 0 ? xapi : watchers[i % watchers.length];
        const response = await client.getResource("/export_raw_vdi/", { query: { vdi, format: i % 4 === 0 ? "vhd" : "raw" } });
        const body = await readAll(response.body);
        await response.task;
        return body;
      }),
    );
    for (const [i, body] of exports.entries()) expect(body.length).toBe(i % 4 === 0 ? exports[0].length : 8 * 1024 * 1024);
    const { createHash } = await import("node:crypto");
    expect(createHash("sha256").update(exports[1]).digest("hex")).toBe(expected);
    await Promise.all([xapi, ...watchers].map((client) => client.barrier()));
    // Every client-created task was destroyed when it settled, and every watcher saw the same objects.
    const tasks = await xapi.call<Record<string, unknown>>("task.get_all_records");
    expect(Object.keys(tasks)).toEqual([]);
    expect(xapi.getObjectByRef(vdi).current_operations).toEqual({});
    for (const watcher of watchers) expect(Object.keys(watcher.objects.all).sort()).toEqual(Object.keys(xapi.objects.all).sort());
    // Memory stays flat-ish: 20 × 8 MiB bodies are held by the test itself, the lab adds little.
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(400 * 1024 * 1024);
  });
});
