/**
 * A two-host lab pool (LabOptions.memberAddress) routes as XAPI does: the member answers API calls with HOST_IS_SLAVE
 * [master address] (xapi_session.ml), and transfers of an SR only one host sees answer 302 to that host, same path and
 * query (importexport.ml `return_302_redirect`, import_raw_vdi.ml, export_raw_vdi.ml, import.ml, export.ml).
 */
import { createHash } from "node:crypto";
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Xapi } from "xen-api";
import { createLabFixture, diskOf, objectsOfType, readAll, vmNamed, type LabFixture } from "./lab-fixture.js";

const MEMBER = "127.0.0.2";

/** One raw request: status, headers, body text. */
function send(url: string, method: string, body?: Buffer): Promise<{ status: number; location?: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: body ? { "content-length": body.length } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, text: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("a two-host lab pool", () => {
  let fixture: LabFixture;
  let xapi: Xapi;
  let memberSr: string;
  let memberDisk: string;

  beforeAll(async () => {
    fixture = await createLabFixture({ memberAddress: MEMBER, diskSizeBytes: 8 * 1024 * 1024 });
    xapi = await fixture.connect();
    memberSr = objectsOfType(xapi, "SR").find((sr) => sr.name_label === "Local storage (host 2)")!.$ref;
    memberDisk = diskOf(xapi, vmNamed(xapi, "member-vm"));
  });
  afterAll(async () => {
    await fixture?.dispose();
  });

  it("holds two hosts; the member's local SR is seen by the member only, shared SRs by both", async () => {
    const hosts = objectsOfType(xapi, "host");
    expect(hosts.map((host) => host.address).sort()).toEqual(["127.0.0.1", MEMBER]);
    const member = hosts.find((host) => host.address === MEMBER)!;
    const pbdHosts = (sr: string) => (xapi.getObjectByRef(sr).PBDs as string[]).map((pbd) => xapi.getObjectByRef(pbd).host);
    expect(pbdHosts(memberSr)).toEqual([member.$ref]);
    const iso = objectsOfType(xapi, "SR").find((sr) => sr.content_type === "iso")!;
    expect(pbdHosts(iso.$ref)).toHaveLength(2);
    expect(xapi.getObjectByRef(memberDisk).SR).toBe(memberSr);
  });

  it("the member answers every API call HOST_IS_SLAVE [master address] (JSON-RPC and XML-RPC); xen-api follows to the master", async () => {
    const login = JSON.stringify({ jsonrpc: "2.0", method: "session.login_with_password", params: ["root", "lab"], id: 7 });
    const answer = await send(`${fixture.lab.member!.url}/jsonrpc`, "POST", Buffer.from(login));
    expect(JSON.parse(answer.text)).toEqual({ jsonrpc: "2.0", error: { code: 1, message: "HOST_IS_SLAVE", data: ["127.0.0.1"] }, id: 7 });
    const xml = await send(
      `${fixture.lab.member!.url}/`,
      "POST",
      Buffer.from(
        "<?xml version='1.0'?><methodCall><methodName>pool.get_all</methodName><params><param><value>x</value></param></params></methodCall>",
      ),
    );
    expect(xml.text).toContain("<value>HOST_IS_SLAVE</value>");

    const viaMember = createClient({ url: fixture.lab.member!.url, auth: { user: "root", password: "lab" }, allowUnauthorized: true });
    try {
      await viaMember.connect();
      await viaMember.objectsFetched;
      expect((viaMember as unknown as { _url: { hostname: string } })._url.hostname).toBe("127.0.0.1");
      expect(await viaMember.call("pool.get_all")).toHaveLength(1);
    } finally {
      await viaMember.disconnect();
    }
  });

  it("export_raw_vdi, export and import of the member's SR answer 302 to the member (same path and query) and the member serves them", async () => {
    const task = await xapi.createTask("redirect test");
    const query = new URLSearchParams({ session_id: xapi.sessionId, task_id: task, vdi: memberDisk, format: "raw" });
    const first = await send(`${fixture.lab.url}/export_raw_vdi/?${query}`, "GET");
    expect(first.status).toBe(302);
    expect(first.location).toBe(`http://${MEMBER}:${fixture.lab.port}/export_raw_vdi/?${query}`);
    const served = await send(first.location!, "GET");
    expect(served.status).toBe(200);
    await xapi.watchTask(task);

    const vm = vmNamed(xapi, "member-vm").$ref;
    const exportQuery = new URLSearchParams({ session_id: xapi.sessionId, ref: vm });
    expect((await send(`${fixture.lab.url}/export/?${exportQuery}`, "GET")).location).toBe(
      `http://${MEMBER}:${fixture.lab.port}/export/?${exportQuery}`,
    );
    const importQuery = new URLSearchParams({ session_id: xapi.sessionId, sr_id: memberSr });
    const probe = await send(`${fixture.lab.url}/import/?${importQuery}`, "PUT", Buffer.alloc(0));
    expect(probe).toMatchObject({ status: 302, location: `http://${MEMBER}:${fixture.lab.port}/import/?${importQuery}` });
    // And back: the member sends a disk of the master's SR to the master.
    const masterDisk = diskOf(xapi, vmNamed(xapi, "win-fat"));
    const back = new URLSearchParams({ session_id: xapi.sessionId, vdi: masterDisk, format: "raw" });
    expect((await send(`${fixture.lab.member!.url}/export_raw_vdi/?${back}`, "GET")).location).toBe(
      `http://127.0.0.1:${fixture.lab.port}/export_raw_vdi/?${back}`,
    );
    // A bad session is refused before any redirect.
    expect((await send(`${fixture.lab.url}/export_raw_vdi/?vdi=${memberDisk}&session_id=OpaqueRef:nope`, "GET")).status).toBe(401);
  });

  it("xen-api's getResource follows the redirect: the disk read through the master equals the member's disk", async () => {
    const before = fixture.lab.member!.requests.length;
    const response = await xapi.getResource("/export_raw_vdi/", { query: { vdi: memberDisk, format: "raw" } });
    const bytes = await readAll(response.body);
    await response.task;
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(await xapi.call("lab.vdi_sha256", memberDisk));
    expect(fixture.lab.member!.requests.slice(before)).toEqual(["GET /export_raw_vdi/"]);
  });
});
