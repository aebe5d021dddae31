/**
 * The lab serves a pool's metadata backup as XAPI does (`GET /pool/xmldbdump`) and takes it back
 * (`PUT /pool/xmldbdump[?dry_run=true]`): what a metadata backup job reads and restores. The dump is read by Python's
 * own XML parser as an oracle; the restore is seen through a fresh xen-api client, as a client sees XAPI restart.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Xapi } from "xen-api";
import { eventually } from "../support/eventually.js";
import { createLabFixture, objectsOfType, vmNamed, type LabFixture } from "./lab-fixture.js";

const run = promisify(execFile);

/** Rows per table and the manifest, as Python's xml.etree reads the dump. */
async function readWithPython(
  xml: string,
): Promise<{ manifest: Record<string, string>; rows: Record<string, { ref: string; uuid?: string; name_label?: string }[]> }> {
  const script = `
import json, sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
manifest = {p.get("key"): p.get("value") for p in root.find("manifest")}
rows = {t.get("name"): [{k: r.get(k) for k in ("ref", "uuid", "name_label") if r.get(k) is not None} for t2 in [t] for r in t2.findall("row")] for t in root.findall("table")}
print(json.dumps({"manifest": manifest, "rows": rows}))
`;
  const child = run("python3", ["-c", script], { maxBuffer: 64 * 1024 * 1024 });
  child.child.stdin!.end(xml);
  return JSON.parse((await child).stdout);
}

describe("a lab pool's database dump (/pool/xmldbdump)", () => {
  let fixture: LabFixture;
  let xapi: Xapi;

  beforeEach(async () => {
    fixture = await createLabFixture();
    xapi = await fixture.connect();
  });
  afterEach(async () => {
    await fixture.dispose();
  });

  const url = (query: Record<string, string>) =>
    `${fixture.lab.url}/pool/xmldbdump?${new URLSearchParams({ session_id: xapi.sessionId!, ...query })}`;

  /** A dump without its generation count, which every call (a task created) moves on. */
  const content = (xml: string) => xml.replace(/<pair key="generation_count" value="\d+"\/>/, "");

  async function dump(): Promise<string> {
    const response = await fetch(url({}));
    expect(response.status).toBe(200);
    return response.text();
  }

  /** PUTs a dump under a task of our own, and gives the task's end (status and error). */
  async function put(body: string, query: Record<string, string> = {}): Promise<{ status: string; error: string[] }> {
    const task = (await xapi.call("task.create", "restore pool metadata", "")) as string;
    const response = await fetch(url({ task_id: task, ...query }), { method: "PUT", body });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    return eventually("the restore's task to end", async () => {
      const record = (await xapi.call("task.get_record", task)) as { status: string; error_info: string[] };
      expect(record.status).not.toBe("pending");
      return { status: record.status, error: record.error_info };
    });
  }

  it("gives every VM, host and SR of the pool with a schema version, readable by another XML parser", async () => {
    const { manifest, rows } = await readWithPython(await dump());
    expect(manifest).toMatchObject({ schema_major_vsn: "5", schema_minor_vsn: expect.stringMatching(/^\d+$/) });
    for (const type of ["VM", "host", "SR", "VDI", "pool"]) {
      const uuids = objectsOfType(xapi, type).map((object) => object.uuid as string);
      expect((rows[type] ?? []).map((row) => row.uuid).sort(), type).toEqual(uuids.sort());
    }
    expect(rows.task).toBeUndefined();
    expect(rows.VM!.map((row) => row.name_label)).toContain("web-ext4");
  });

  it("checks a dump on a dry run and changes nothing", async () => {
    const before = await dump();
    expect(await put(before, { dry_run: "true" })).toMatchObject({ status: "success" });
    await xapi.call("VM.get_record", vmNamed(xapi, "web-ext4").$ref);
    expect(content(await dump())).toBe(content(before));
  });

  it("restores the pool's objects from a dump: a VM destroyed since is back with its uuid, the master keeps its own", async () => {
    const saved = await dump();
    const vm = objectsOfType(xapi, "VM").find(
      (object) => !object.is_a_template && !object.is_control_domain && object.power_state === "Halted",
    )!;
    const masterUuid = objectsOfType(xapi, "host")[0]!.uuid;
    await xapi.call("VM.destroy", vm.$ref);
    expect(await put(saved)).toMatchObject({ status: "success" });
    // XAPI restarts on the restored database: sessions end, a client logs in again and sees it.
    const fresh = await eventually("the restored database to be served", async () => {
      const client = await fixture.connect();
      expect(objectsOfType(client, "VM").map((object) => object.uuid)).toContain(vm.uuid);
      return client;
    });
    expect(vmNamed(fresh, vm.name_label as string).uuid).toBe(vm.uuid);
    expect(objectsOfType(fresh, "host").map((host) => host.uuid)).toEqual([masterUuid]);
    // Every field of every object came back as it was dumped (sets, maps, numbers, booleans, dates).
    xapi = fresh;
    expect(content(await dump())).toBe(content(saved));
  });

  it("refuses a dump of another schema version, and text that is no dump, changing nothing", async () => {
    const saved = await dump();
    const otherVersion = saved.replace(/key="schema_minor_vsn" value="\d+"/, 'key="schema_minor_vsn" value="1"');
    expect(await put(otherVersion)).toEqual({ status: "failure", error: ["RESTORE_INCOMPATIBLE_VERSION"] });
    const garbage = await put("<html>not a database</html>");
    expect(garbage.status).toBe("failure");
    expect(garbage.error[0]).toBe("INTERNAL_ERROR");
    expect(garbage.error[1]).toMatch(/cannot be read/);
    expect(content(await dump())).toBe(content(saved));
  });

  it("answers 401 without a session", async () => {
    const response = await fetch(`${fixture.lab.url}/pool/xmldbdump`);
    expect(response.status).toBe(401);
    await response.arrayBuffer();
  });
});
