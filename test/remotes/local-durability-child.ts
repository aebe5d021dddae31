/**
 * Run under strace by local-durability.test.ts: one LocalRemote operation after another on the folder
 * given as argument, each preceded by a marker (a failed open of `<folder>/.marker-<step>`) so the
 * trace can be cut into one segment per step.
 */
import { openSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { LocalRemote } from "../../server/remotes/local-remote.js";

const folder = process.argv[2];
if (folder === undefined) throw new Error("usage: local-durability-child.ts <folder>");
const remote = new LocalRemote(folder);

function marker(step: string): void {
  try {
    openSync(join(folder, `.marker-${step}`), "r");
  } catch {
    // missing on purpose: only the attempt shows in the trace
  }
}

const steps: [string, () => Promise<unknown>][] = [
  ["writeStream-new-folders", () => remote.writeStream("vdis/job/disk.vhd", Readable.from([Buffer.alloc(1024 * 1024, 1)]))],
  // Past WRITEBACK_STEP_BYTES (32 MiB): the written part is flushed while the stream goes on.
  [
    "writeStream-large",
    () => remote.writeStream("vdis/job/large.vhd", Readable.from(Array.from({ length: 80 }, () => Buffer.alloc(1024 * 1024, 2)))),
  ],
  ["writeFile-existing-folder", () => remote.writeFile("vdis/job/meta.json", '{"v":1}')],
  ["rename-same-folder", () => remote.rename("vdis/job/meta.json", "vdis/job/meta2.json")],
  ["rename-other-folder", () => remote.rename("vdis/job/meta2.json", "moved/meta.json")],
  ["mkdir-three-levels", () => remote.mkdir("a/b/c")],
  ["mkdir-existing", () => remote.mkdir("a/b/c")],
  ["delete", () => remote.delete("moved/meta.json")],
  ["writeFileExclusive", () => remote.writeFileExclusive("locks/vm.lock", "owner")],
];
await remote.open();
for (const [step, run] of steps) {
  marker(step);
  await run();
}
marker("end");
