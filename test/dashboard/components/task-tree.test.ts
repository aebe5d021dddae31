import { afterEach, describe, expect, it } from "vitest";
import { cleanup, render, screen, within } from "@testing-library/svelte";
import TaskTree from "$lib/components/TaskTree.svelte";
import { buildTaskTree, flattenTree, mergeTask } from "$lib/task-tree.js";

afterEach(cleanup);

function task(id: string, parentId: string | null, startedAt: string, extra: Record<string, unknown> = {}) {
  return {
    id,
    parentId,
    startedAt: `2026-11-26T10:00:${startedAt}Z`,
    kind: "vm",
    name: id,
    status: "SUCCESS",
    progress: 1,
    endedAt: `2026-11-26T10:01:${startedAt}Z`,
    message: null as string | null,
    warnings: [] as string[],
    sizeBytes: null as number | null,
    ...extra,
  };
}

describe("buildTaskTree", () => {
  it("nests tasks by parentId, children in start order, whatever order they arrive in", () => {
    const tasks = [task("export", "vm-a", "03"), task("vm-a", null, "01"), task("snapshot", "vm-a", "02"), task("vm-b", null, "00")];
    const roots = buildTaskTree(tasks);
    expect(roots.map((n) => n.task.id)).toEqual(["vm-b", "vm-a"]);
    expect(roots[1]!.children.map((n) => n.task.id)).toEqual(["snapshot", "export"]);
    expect(flattenTree(roots).map((n) => [n.task.id, n.depth])).toEqual([
      ["vm-b", 0],
      ["vm-a", 0],
      ["snapshot", 1],
      ["export", 1],
    ]);
  });

  it("shows a task whose parent is not known yet at the top rather than dropping it", () => {
    const roots = buildTaskTree([task("transfer", "missing-parent", "05")]);
    expect(roots.map((n) => n.task.id)).toEqual(["transfer"]);
  });

  it("does not hang on a cycle", () => {
    const roots = buildTaskTree([task("a", "b", "01"), task("b", "a", "02")]);
    expect(
      flattenTree(roots)
        .map((n) => n.task.id)
        .sort(),
    ).toEqual(["a", "b"]);
  });

  it("merges a taskUpdated event: replaces the task of that id, or appends a new one", () => {
    const first = [task("vm-a", null, "01", { status: "RUNNING", progress: 0.2 })];
    const updated = mergeTask(first, task("vm-a", null, "01", { status: "RUNNING", progress: 0.6 }));
    expect(updated).toHaveLength(1);
    expect(updated[0]!.progress).toBe(0.6);
    expect(first[0]!.progress).toBe(0.2); // the original list is left alone
    expect(mergeTask(updated, task("export", "vm-a", "02")).map((t) => t.id)).toEqual(["vm-a", "export"]);
  });
});

describe("TaskTree", () => {
  it("renders the tree with progress bars for running tasks, sizes, durations, warnings and errors", () => {
    const tasks = [
      task("vm-a", null, "01", { name: "web-ext4", status: "RUNNING", progress: 0.5, endedAt: null }),
      task("transfer", "vm-a", "02", {
        kind: "transfer",
        name: "to local",
        status: "RUNNING",
        progress: 0.42,
        endedAt: null,
        sizeBytes: 3 * 1024 * 1024,
      }),
      task("snapshot", "vm-a", "01", { kind: "snapshot", name: "snapshot", warnings: ["quiesce failed: plain snapshot taken"] }),
      task("vm-b", null, "03", { name: "db-data", status: "FAILURE", message: "VDI export refused" }),
    ];
    render(TaskTree, { tasks, now: Date.parse("2026-11-26T10:02:00Z") });

    const vmA = screen.getByText("web-ext4").closest("li")!;
    // The snapshot (started first) comes before the transfer, both inside the VM's item.
    const children = within(vmA)
      .getAllByRole("listitem")
      .map((li) => li.getAttribute("data-task-kind"));
    expect(children).toEqual(["snapshot", "transfer"]);
    expect(within(vmA).getByRole("progressbar", { name: "to local progress" }).getAttribute("aria-valuenow")).toBe("42");
    expect(within(vmA).getByText("3.00 MiB")).toBeTruthy();
    expect(within(vmA).getByText("⚠ quiesce failed: plain snapshot taken")).toBeTruthy();

    const vmB = screen.getByText("db-data").closest("li")!;
    expect(vmB.getAttribute("data-status")).toBe("FAILURE");
    expect(within(vmB).getByText("VDI export refused")).toBeTruthy();
    expect(within(vmB).queryByRole("progressbar")).toBeNull(); // an ended task has no bar
    expect(within(vmB).getByTitle("Duration").textContent).toBe("1 min");
  });

  it("says what will happen when there is no task yet", () => {
    render(TaskTree, { tasks: [] });
    expect(screen.getByText(/No tasks yet/)).toBeTruthy();
  });
});
