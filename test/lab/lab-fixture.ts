import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Xapi, type XapiObject } from "xen-api";
import { startLab, type LabOptions, type RunningLab } from "../../server/lab/index.js";

/** A lab in a temporary folder plus the xen-api clients a test opened; `dispose()` closes all of them. */
export interface LabFixture {
  lab: RunningLab;
  dir: string;
  connect(options?: { password?: string; watchEvents?: boolean }): Promise<Xapi>;
  dispose(): Promise<void>;
}

export async function createLabFixture(options: Partial<LabOptions> = {}): Promise<LabFixture> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "cairn-lab-test-")));
  const lab = await startLab({ port: 0, seed: "test", diskSizeBytes: 8 * 1024 * 1024, log: () => {}, ...options, dir });
  const clients: Xapi[] = [];
  return {
    lab,
    dir,
    async connect(connectOptions = {}) {
      const xapi = createClient({
        url: lab.url,
        auth: { user: lab.user, password: connectOptions.password ?? lab.password },
        allowUnauthorized: true,
        watchEvents: connectOptions.watchEvents,
      });
      clients.push(xapi);
      await xapi.connect();
      if (connectOptions.watchEvents !== false) await xapi.objectsFetched;
      return xapi;
    },
    async dispose() {
      await Promise.all(clients.map((xapi) => xapi.disconnect()));
      await lab.stop();
      if (options.dir === undefined) await rm(dir, { recursive: true, force: true });
    },
  };
}

export function objectsOfType(xapi: Xapi, type: string): XapiObject[] {
  return Object.values(xapi.objects.all).filter((object) => object.$type === type);
}

export function vmNamed(xapi: Xapi, name: string): XapiObject {
  const vm = objectsOfType(xapi, "VM").find((object) => object.name_label === name);
  if (vm === undefined) throw new Error(`no VM named ${name} in the lab`);
  return vm;
}

/** The first disk VDI ref of a VM. */
export function diskOf(xapi: Xapi, vm: XapiObject): string {
  for (const vbd of vm.VBDs as string[]) {
    const record = xapi.getObjectByRef(vbd);
    if (record.type === "Disk") return record.VDI as string;
  }
  throw new Error(`VM ${String(vm.name_label)} has no disk`);
}

/** Reads a whole response body into one buffer (test sizes only). */
export async function readAll(stream: AsyncIterable<Buffer | Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}
