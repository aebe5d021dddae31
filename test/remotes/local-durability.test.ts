import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { skipReasonForTools } from "../support/system-tools.js";

/**
 * What a LOCAL remote asks of the kernel, seen with strace: the file is fsynced before its rename,
 * and the folder holding a changed name is fsynced after the change (rename, link, unlink, mkdir).
 * The operations run in a child process (local-durability-child.ts) traced as a whole; its markers
 * cut the trace into one segment per operation.
 */

const REPO = join(import.meta.dirname, "..", "..");

/** One traced system call on a path under the remote's folder, with paths relative to it. */
interface Call {
  call: "fsync" | "fdatasync" | "rename" | "link" | "unlink" | "mkdir";
  paths: string[];
}

/** Temporary names are random: `.disk.vhd.tmp-0123...` becomes `.disk.vhd.tmp-*`. */
const stable = (path: string) => path.replace(/\.tmp-[0-9a-f]{16}$/, ".tmp-*");

function parseTrace(trace: string, root: string): Map<string, Call[]> {
  const steps = new Map<string, Call[]>();
  let current: Call[] | undefined;
  const relative = (path: string) => stable(path === root ? "" : path.slice(root.length + 1));
  for (const line of trace.split("\n")) {
    const marker = /"[^"]*\/\.marker-([\w-]+)"/.exec(line);
    if (marker !== null) {
      current = [];
      steps.set(marker[1], current);
      continue;
    }
    if (current === undefined || !line.includes(root)) continue;
    const sync = /\b(fsync|fdatasync)\(\d+<([^>]*)>/.exec(line);
    if (sync !== null) {
      current.push({ call: sync[1] as "fsync" | "fdatasync", paths: [relative(sync[2])] });
      continue;
    }
    const other = /\b(rename|renameat2?|link|linkat|unlink|unlinkat|mkdir|mkdirat)\((.*)/.exec(line);
    if (other === null) continue;
    const call = other[1].replace(/at2?$/, "") as Call["call"];
    const paths = [...other[2].matchAll(/"([^"]*)"/g)].map((match) => relative(match[1]));
    current.push({ call, paths });
  }
  return steps;
}

const show = (calls: Call[]) => calls.map((entry) => `${entry.call} ${entry.paths.join(" -> ")}`);

/** Asserts that `expected` appear in `calls` in this order (other calls may come between). */
function expectInOrder(calls: Call[], expected: string[]): void {
  const seen = show(calls);
  let from = 0;
  for (const wanted of expected) {
    const at = seen.indexOf(wanted, from);
    expect(at, `"${wanted}" after position ${from} in:\n${seen.join("\n")}`).toBeGreaterThanOrEqual(0);
    from = at + 1;
  }
}

const folderSyncs = (calls: Call[]) => show(calls.filter((entry) => entry.call === "fsync" && !entry.paths[0].includes(".tmp-")));

const skipReason = skipReasonForTools(["strace"]);

describe.skipIf(skipReason !== undefined)("LOCAL remote: durability, as strace sees it", () => {
  let root: string;
  let steps: Map<string, Call[]>;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "cairn-local-durability-"));
    const traceFile = join(root, "..", `${root.split("/").pop()}.strace`);
    const child = spawn(
      "strace",
      [
        "-f",
        "-qq",
        "-y",
        "-e",
        "trace=%file,fsync,fdatasync",
        "-o",
        traceFile,
        process.execPath,
        "--import",
        "tsx",
        "test/remotes/local-durability-child.ts",
        root,
      ],
      { cwd: REPO, stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code, `strace or the child failed:\n${stderr}`).toBe(0);
    steps = parseTrace(await readFile(traceFile, "utf8"), root);
    await rm(traceFile, { force: true });
  });
  afterAll(async () => {
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it("writeStream into new folders: each new folder synced into its parent, the file synced, renamed, then its folder synced", () => {
    const calls = steps.get("writeStream-new-folders") ?? [];
    expectInOrder(calls, [
      "mkdir vdis/job",
      "fsync ", // the root, which got "vdis"
      "fsync vdis", // which got "job"
      "fsync vdis/job/.disk.vhd.tmp-*",
      "rename vdis/job/.disk.vhd.tmp-* -> vdis/job/disk.vhd",
      "fsync vdis/job",
    ]);
  });

  it("writeStream of a large file flushes its data while it is written, then fsyncs it whole before the rename", () => {
    const calls = steps.get("writeStream-large") ?? [];
    const seen = show(calls);
    const finalSync = seen.indexOf("fsync vdis/job/.large.vhd.tmp-*");
    const early = seen.filter((call, at) => call === "fdatasync vdis/job/.large.vhd.tmp-*" && at < finalSync);
    expect(early.length, seen.join("\n")).toBeGreaterThanOrEqual(1);
    expect(seen.slice(finalSync), seen.join("\n")).not.toContain("fdatasync vdis/job/.large.vhd.tmp-*");
    expectInOrder(calls, ["fsync vdis/job/.large.vhd.tmp-*", "rename vdis/job/.large.vhd.tmp-* -> vdis/job/large.vhd", "fsync vdis/job"]);
  });

  it("writeFile into an existing folder costs one folder fsync, after the rename", () => {
    const calls = steps.get("writeFile-existing-folder") ?? [];
    expectInOrder(calls, ["fsync vdis/job/.meta.json.tmp-*", "rename vdis/job/.meta.json.tmp-* -> vdis/job/meta.json", "fsync vdis/job"]);
    expect(folderSyncs(calls)).toEqual(["fsync vdis/job"]);
  });

  it("rename syncs the target's folder, and the source's too when it differs", () => {
    const same = steps.get("rename-same-folder") ?? [];
    expectInOrder(same, ["rename vdis/job/meta.json -> vdis/job/meta2.json", "fsync vdis/job"]);
    expect(folderSyncs(same)).toEqual(["fsync vdis/job"]);
    const other = steps.get("rename-other-folder") ?? [];
    expectInOrder(other, ["mkdir moved", "fsync ", "rename vdis/job/meta2.json -> moved/meta.json"]);
    const after = other.slice(show(other).indexOf("rename vdis/job/meta2.json -> moved/meta.json"));
    expect(folderSyncs(after).sort()).toEqual(["fsync moved", "fsync vdis/job"]);
  });

  it("mkdir syncs the parent of each folder it created, and nothing when all exist", () => {
    const calls = steps.get("mkdir-three-levels") ?? [];
    const lastMkdir = show(calls).lastIndexOf("mkdir a/b/c");
    expect(lastMkdir).toBeGreaterThanOrEqual(0);
    expect(folderSyncs(calls.slice(lastMkdir)).sort()).toEqual(["fsync ", "fsync a", "fsync a/b"]);
    expect(folderSyncs(steps.get("mkdir-existing") ?? [])).toEqual([]);
  });

  it("delete syncs the folder after the unlink", () => {
    expectInOrder(steps.get("delete") ?? [], ["unlink moved/meta.json", "fsync moved"]);
  });

  it("writeFileExclusive publishes a synced file with link(2), then syncs the folder", () => {
    const calls = steps.get("writeFileExclusive") ?? [];
    expectInOrder(calls, [
      "fsync locks/.vm.lock.tmp-*",
      "link locks/.vm.lock.tmp-* -> locks/vm.lock",
      "fsync locks",
      "unlink locks/.vm.lock.tmp-*",
    ]);
  });
});
