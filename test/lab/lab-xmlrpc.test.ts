import { isDeepStrictEqual } from "node:util";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Xapi } from "xen-api";
import { formatMethodCall, parseMethodResponse, XmlRpcDateTime, XmlRpcDouble, XmlRpcInt32 } from "../../server/lab/xmlrpc-codec.js";
import { eventually } from "../support/eventually.js";
import { skipReasonForPythonModule } from "../support/system-tools.js";
import { createLabFixture, objectsOfType, readAll, vmNamed, type LabFixture } from "./lab-fixture.js";

// Debian's interpreter, by path: another Python may come first on the PATH without the Debian package.
const PYTHON = "/usr/bin/python3";
const DRIVER = fileURLToPath(new URL("./xenapi-client.py", import.meta.url));
const CLASSES = ["pool", "host", "SR", "PBD", "VDI", "VBD", "VM", "VIF", "network", "task", "message"];

/** The driver's stdout as `READY`/`RESULT` documents; the test answers each `READY` with `go()`. */
class PythonDriver {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  private readonly waiting: Array<(line: string | undefined) => void> = [];
  private ended = false;
  private stderr = "";

  constructor(args: string[]) {
    this.child = spawn(PYTHON, [DRIVER, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    this.child.stderr.on("data", (chunk: Buffer) => (this.stderr += chunk.toString()));
    const reader = createInterface({ input: this.child.stdout });
    reader.on("line", (line) => {
      const waiter = this.waiting.shift();
      if (waiter) waiter(line);
      else this.lines.push(line);
    });
    reader.on("close", () => {
      this.ended = true;
      for (const waiter of this.waiting.splice(0)) waiter(undefined);
    });
  }

  /** The next document, which must be of `kind`. */
  async next(kind: "READY" | "RESULT"): Promise<any> {
    const line =
      this.lines.shift() ?? (this.ended ? undefined : await new Promise<string | undefined>((resolve) => this.waiting.push(resolve)));
    if (line === undefined) {
      await once(this.child, "close").catch(() => {});
      throw new Error(`the Python driver ended before ${kind}: ${this.stderr.trim()}`);
    }
    if (!line.startsWith(`${kind} `)) throw new Error(`the Python driver printed ${line.slice(0, 200)} instead of ${kind}`);
    return JSON.parse(line.slice(kind.length + 1));
  }

  go(): void {
    this.child.stdin.write("go\n");
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const closed = once(this.child, "close");
    this.child.kill();
    await closed;
  }
}

/**
 * One view of both clients' values: the XML-RPC client gets XAPI's ints as digit strings, its floats and datetimes
 * tagged by the driver; the JSON-RPC client gets numbers and strings. Numbers and tags become their text.
 */
function normalise(value: unknown): unknown {
  if (typeof value === "number") return String(value);
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === "object") {
    const tagged = value as { $datetime?: string; $double?: number; $int?: number };
    if (tagged.$datetime !== undefined) return tagged.$datetime;
    if (tagged.$double !== undefined) return String(tagged.$double);
    if (tagged.$int !== undefined) return String(tagged.$int);
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, normalise(item)]));
  }
  return value;
}

/** A JSON-RPC 1.0 call without any client: XAPI's `error` is then the plain `[code, ...params]` array. */
async function jsonRpc(url: string, method: string, params: unknown[]): Promise<{ result: unknown; error: string[] | null }> {
  const response = await fetch(`${url}/jsonrpc`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method, params, id: 1 }),
  });
  return (await response.json()) as { result: unknown; error: string[] | null };
}

async function xmlRpc(
  url: string,
  method: string,
  params: unknown[],
  path = "/",
): Promise<{ status: number; type: string | null; value: any }> {
  const response = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "text/xml" },
    body: formatMethodCall(method, params),
  });
  const text = await response.text();
  return {
    status: response.status,
    type: response.headers.get("content-type"),
    value: response.status === 200 ? parseMethodResponse(text) : text,
  };
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/**
 * An XVA's members as `[name, size, sha256]`, with the export's object ids (`Ref:<n>`, numbered by XAPI from a counter
 * that outlives one export) renamed in order of first appearance in ova.xml: what the Python driver computes too.
 */
function canonicalXva(data: Buffer): Array<[string, number, string]> {
  const members: Array<[string, Buffer]> = [];
  for (let offset = 0; offset + 512 <= data.length; ) {
    const header = data.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) break;
    const field = (start: number, end: number) => header.toString("latin1", start, end).replace(/\0[\s\S]*$/, "");
    const size = Number.parseInt(field(124, 136).trim(), 8);
    members.push([field(0, 100), data.subarray(offset + 512, offset + 512 + size)]);
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  const exportId = /(?<![A-Za-z])Ref:\d+(?![\w-])/g;
  const ids = new Map<string, string>();
  for (const [found] of members[0][1].toString("utf8").matchAll(exportId)) if (!ids.has(found)) ids.set(found, `Ref:#${ids.size}`);
  const rename = (text: string) => text.replace(exportId, (found) => ids.get(found) ?? found);
  return members.map(([name, body], index) => {
    const content = index === 0 ? Buffer.from(rename(body.toString("utf8"))) : body;
    return [rename(name), content.length, sha256(content)];
  });
}

describe.skipIf(skipReasonForPythonModule(PYTHON, "os_xenapi.client.XenAPI", "python3-os-xenapi"))(
  "the lab over XML-RPC, driven by Debian's os-xenapi XenAPI client",
  () => {
    let fixture: LabFixture;
    let xapi: Xapi;
    let driver: PythonDriver | undefined;
    beforeAll(async () => {
      fixture = await createLabFixture();
      xapi = await fixture.connect();
    });
    afterEach(async () => {
      await driver?.stop();
      driver = undefined;
    });
    afterAll(async () => {
      await fixture?.dispose();
    });

    it("logs in, reads every class, snapshots, exports, destroys and follows events as the xen-api client sees them", async () => {
      const { url, user, password } = fixture.lab;
      driver = new PythonDriver([url, user, password, "win-fat"]);

      // 1. Every record of every class, field by field, against the JSON-RPC client's view at the same moment.
      await driver.next("READY");
      const jsonRecords: Record<string, Record<string, Record<string, unknown>>> = {};
      for (const cls of CLASSES) jsonRecords[cls] = await xapi.call(`${cls}.get_all_records`);
      driver.go();

      // 2. The snapshot exists: export it through the xen-api client too, before the driver destroys it.
      const { snapshot } = await driver.next("READY");
      const jsonSnapshot = await xapi.call<Record<string, unknown>>("VM.get_record", snapshot);
      const exported = await xapi.getResource("/export/", { query: { ref: snapshot } });
      const xva = await readAll(exported.body);
      await exported.task;
      driver.go();

      const result = await driver.next("RESULT");
      const sourceVm = vmNamed(xapi, "win-fat");

      const master = xapi.getObjectByRef(xapi.pool.master as string);
      expect(result.api_version).toBe(`${master.API_version_major}.${master.API_version_minor}`);
      for (const cls of CLASSES) {
        expect(Object.keys(result.records[cls]).sort(), `${cls} refs`).toEqual(Object.keys(jsonRecords[cls]).sort());
        expect(normalise(result.records[cls]), `${cls} records`).toEqual(normalise(jsonRecords[cls]));
      }
      expect(Object.keys(result.records.VM).length).toBeGreaterThan(4);

      // XAPI's XML-RPC types, as this client receives them: ints as digit strings, floats, datetimes, booleans, sets, maps.
      const vm = result.records.VM[sourceVm.$ref];
      expect(vm.memory_static_max).toBe(String(sourceVm.memory_static_max));
      expect(vm.domid).toBe("-1");
      expect(vm.HVM_shadow_multiplier).toEqual({ $double: 1 });
      expect(vm.snapshot_time).toEqual({ $datetime: "19700101T00:00:00Z" });
      expect(vm.is_a_template).toBe(false);
      expect(vm.power_state).toBe("Halted");
      expect(vm.VBDs).toEqual(sourceVm.VBDs);
      expect(vm.HVM_boot_params).toEqual({ order: "cd" });
      expect(typeof Object.values(result.records.VDI as Record<string, any>)[0].virtual_size).toBe("string");

      // The Async call's task, read over XML-RPC.
      expect(result.task).toMatchObject({
        status: "success",
        progress: { $double: 1 },
        result: `<value>${snapshot}</value>`,
        error_info: [],
      });
      expect(result.task.created.$datetime).toMatch(/^\d{8}T\d{2}:\d{2}:\d{2}Z$/);
      for (const count of Object.values(result.valid_ref_counts)) expect(count).toEqual({ $int: expect.any(Number) });

      // The snapshot as both clients see it, and its `add` event.
      expect(normalise(result.snapshot_record)).toEqual(normalise(jsonSnapshot));
      expect(result.snapshot_record).toMatchObject({ is_a_snapshot: true, snapshot_of: sourceVm.$ref, name_label: "xmlrpc-proof" });
      expect(result.snapshot_record.snapshot_time.$datetime).toMatch(/^\d{8}T\d{2}:\d{2}:\d{2}Z$/);
      const added = result.events_added.find((event: any) => event.ref === snapshot && event.operation === "add");
      expect(added).toMatchObject({ class: "vm", snapshot: { uuid: jsonSnapshot.uuid, is_a_snapshot: true, snapshot_of: sourceVm.$ref } });

      // The export by plain urllib is a valid XVA (Python's tarfile and XML-RPC parser read it), the same as the xen-api client's.
      // Two exports of one VM differ only in XAPI's per-process object numbering: compared member by member once renamed.
      expect(result.export.status).toBe(200);
      expect(result.export.canonical).toEqual(canonicalXva(xva));
      expect(result.export.members[0]).toBe("ova.xml");
      expect(result.export.members.some((name: string) => /^Ref:\d+\/\d{8}$/.test(name))).toBe(true);
      expect(result.export.ova_vm_names).toEqual(["xmlrpc-proof"]);
      expect(result.export.ova_vm_uuids).toEqual([jsonSnapshot.uuid]);
      expect(result.export.ova_classes).toEqual(expect.arrayContaining(["VM", "VBD", "VDI", "SR"]));

      // Destroyed as XAPI requires (VM.destroy, then VDI.destroy of its disks), seen as `del` events and by the other client.
      expect(result.destroyed_disks.length).toBeGreaterThan(0);
      const deletions = result.events_deleted.filter((event: any) => event.operation === "del").map((event: any) => event.ref);
      expect(deletions).toEqual(expect.arrayContaining([snapshot, ...result.destroyed_disks, ...result.destroyed_vbds]));
      await expect(xapi.call("VM.get_record", snapshot)).rejects.toMatchObject({ code: "HANDLE_INVALID" });
      for (const vdi of result.destroyed_disks) {
        await expect(xapi.call("VDI.get_record", vdi)).rejects.toMatchObject({ code: "HANDLE_INVALID" });
      }

      // Errors: the same ErrorDescription as over JSON-RPC, raised by the client as XenAPI.Failure.
      const session = (await jsonRpc(url, "session.login_with_password", [user, password])).result as string;
      expect(result.errors.unknown_method).toEqual((await jsonRpc(url, "VM.no_such_method", [session, sourceVm.$ref])).error);
      expect(result.errors.unknown_method[0]).toBe("MESSAGE_METHOD_UNKNOWN");
      expect(result.errors.parameter_count).toEqual((await jsonRpc(url, "VM.get_record", [session])).error);
      expect(result.errors.parameter_count[0]).toBe("MESSAGE_PARAMETER_COUNT_MISMATCH");
      expect(result.errors.bad_login).toEqual((await jsonRpc(url, "session.login_with_password", [user, `${password}-wrong`])).error);
      expect(result.errors.handle_invalid).toEqual((await jsonRpc(url, "VM.get_record", [session, "OpaqueRef:no-such-vm"])).error);
      // A bad session: this client never raises it (it logs in again), so the raw answer is compared, and the retry seen.
      expect(result.errors.bad_session_raw).toEqual({
        Status: "Failure",
        ErrorDescription: (await jsonRpc(url, "VM.get_all", ["OpaqueRef:no-such-session"])).error,
      });
      expect(result.errors.bad_session_raw.ErrorDescription[0]).toBe("SESSION_INVALID");
      expect(result.relogin).toEqual({ new_session: true, pools: 1 });
      await jsonRpc(url, "session.logout", [session]);
    }, 180_000);

    it("lets the xen-api client connect over its XML-RPC transport and follow events", async () => {
      const xml = createClient({
        url: fixture.lab.url,
        auth: { user: fixture.lab.user, password: fixture.lab.password },
        allowUnauthorized: true,
        transport: "xml-rpc",
      });
      try {
        await xml.connect();
        await xml.objectsFetched;
        const view = (client: Xapi) =>
          Object.fromEntries(objectsOfType(client, "VM").map((vm) => [vm.$ref, [vm.uuid, vm.name_label, vm.power_state, vm.VBDs]]));
        // Both caches follow events: the earlier test's VMs may still be leaving the JSON-RPC client's cache.
        await eventually("both clients to see the same VMs", () => isDeepStrictEqual(view(xml), view(xapi)));
        expect(view(xml)).toEqual(view(xapi));
        // The same record, with XAPI's XML-RPC ints as strings.
        const overXml = vmNamed(xml, "win-fat");
        expect(overXml.memory_static_max).toBe(String(vmNamed(xapi, "win-fat").memory_static_max));

        const clone = await xapi.callAsync<string>("VM.clone", vmNamed(xapi, "win-fat").$ref, "seen-over-xmlrpc");
        await eventually(
          "the XML-RPC client to see the clone",
          () => xml.getObjectByRef(clone, undefined)?.name_label === "seen-over-xmlrpc",
        );
        await xapi.callAsync("VM.destroy", clone);
        await eventually("the XML-RPC client to see the clone go", () => xml.getObjectByRef(clone, undefined) === undefined);
      } finally {
        await xml.disconnect();
      }
    }, 120_000);

    it("answers XML-RPC on any POST path but /jsonrpc, with XAPI's response shapes and types", async () => {
      const { url, user, password } = fixture.lab;
      for (const path of ["/", "/RPC2", "/xmlrpc"]) {
        const login = await xmlRpc(url, "session.login_with_password", [user, password], path);
        expect(login).toMatchObject({
          status: 200,
          type: "text/xml",
          value: { Status: "Success", Value: expect.stringMatching(/^OpaqueRef:/) },
        });
      }
      const session = (await xmlRpc(url, "session.login_with_password", [user, password])).value.Value as string;
      const vm = vmNamed(xapi, "win-fat").$ref;
      const record = (await xmlRpc(url, "VM.get_record", [session, vm])).value.Value;
      expect(record.HVM_shadow_multiplier).toEqual(new XmlRpcDouble(1));
      expect(record.snapshot_time).toEqual(new XmlRpcDateTime("19700101T00:00:00Z"));
      expect(record.VCPUs_max).toBe(String(vmNamed(xapi, "win-fat").VCPUs_max));
      expect((await xmlRpc(url, "VM.get_memory_static_max", [session, vm])).value.Value).toBe(
        String(vmNamed(xapi, "win-fat").memory_static_max),
      );
      const events = (await xmlRpc(url, "event.from", [session, ["pool"], "", 0])).value.Value;
      expect(events.valid_ref_counts.pool).toEqual(new XmlRpcInt32(1));
      expect(events.events[0].snapshot.name_label).toBe("lab");

      // An int sent as XAPI's XML-RPC clients send it (a digit string) sets the field; void answers "".
      const before = await xapi.call<number>("VM.get_VCPUs_max", vm);
      expect((await xmlRpc(url, "VM.set_VCPUs_max", [session, vm, String(before + 2)])).value).toEqual({ Status: "Success", Value: "" });
      expect(await xapi.call("VM.get_VCPUs_max", vm)).toBe(before + 2);
      await xapi.call("VM.set_VCPUs_max", vm, before);

      // Text survives both ways: references, CDATA, a CR (sent as a reference), characters outside the BMP.
      const description = 'a & b < c > "d" \r\n e \u{1F600}';
      const call = formatMethodCall("VM.set_name_description", [session, vm, "PLACEHOLDER"]).replace(
        "<value>PLACEHOLDER</value>",
        '<value><string>a &amp; b &lt; c<![CDATA[ > "d" ]]>&#13;&#10; e &#x1F600;</string></value>',
      );
      const set = await fetch(`${url}/`, { method: "POST", body: call });
      expect(parseMethodResponse(await set.text())).toEqual({ Status: "Success", Value: "" });
      expect(await xapi.call("VM.get_name_description", vm)).toBe(description);
      expect((await xmlRpc(url, "VM.get_name_description", [session, vm])).value.Value).toBe(description);
      await xapi.call("VM.set_name_description", vm, "");

      // XAPI answers system.listMethods without the Status struct, and an unparsable body with its HTTP 500 page.
      const methods = (await xmlRpc(url, "system.listMethods", [])).value;
      expect(methods).toEqual(expect.arrayContaining(["VM.get_all_records", "event.from"]));
      const malformed = await fetch(`${url}/`, {
        method: "POST",
        headers: { "content-type": "text/xml" },
        body: "<methodCall><methodName>x",
      });
      expect(malformed.status).toBe(500);
      expect(malformed.headers.get("content-type")).toBe("text/html");
      expect(await malformed.text()).toContain("Xmlrpc.Parse_error");
      await xmlRpc(url, "session.logout", [session]);
    });
  },
);
