import { afterEach, describe, expect, it } from "vitest";
import { cleanup, render, screen } from "@testing-library/svelte";
import SmartSelectionPreview from "$lib/components/SmartSelectionPreview.svelte";
import { previewSmartSelection, type SmartPattern } from "$lib/vm-selection.js";

afterEach(cleanup);

const poolA = { id: "11111111-1111-4111-8111-111111111111", name: "lab" };
const poolB = { id: "22222222-2222-4222-8222-222222222222", name: "dr" };
// The lab's VMs (server/lab/seed-pool.ts) plus one on a second pool.
const vms = [
  { uuid: "u1", name: "web-ext4", powerState: "Running", tags: ["prod", "web"], pool: poolA },
  { uuid: "u2", name: "win-fat", powerState: "Halted", tags: ["test", "windows"], pool: poolA },
  { uuid: "u3", name: "db-data", powerState: "Paused", tags: ["prod", "db"], pool: poolA },
  { uuid: "u4", name: "scratch", powerState: "Suspended", tags: ["cairn:no-bak"], pool: poolA },
  { uuid: "u5", name: "app-dr", powerState: "Running", tags: ["prod", "web"], pool: poolB },
];

const pattern = (p: Partial<SmartPattern>): SmartPattern => ({
  poolIds: [],
  tagsAll: [],
  tagsAny: [],
  tagsNone: [],
  powerStates: [],
  ...p,
});
const names = (p: Partial<SmartPattern>) => previewSmartSelection(pattern(p), vms).selected.map((vm) => vm.name);

describe("previewSmartSelection (the server's rules, server/engine/backup/vm-selection.ts)", () => {
  it("selects every VM but the cairn:no-bak ones with an empty pattern, sorted by name", () => {
    expect(names({})).toEqual(["app-dr", "db-data", "web-ext4", "win-fat"]);
    expect(previewSmartSelection(pattern({}), vms).excluded.map((vm) => vm.name)).toEqual(["scratch"]);
  });

  it("needs every tag of tagsAll, one of tagsAny, none of tagsNone", () => {
    expect(names({ tagsAll: ["prod", "web"] })).toEqual(["app-dr", "web-ext4"]);
    expect(names({ tagsAny: ["db", "windows"] })).toEqual(["db-data", "win-fat"]);
    expect(names({ tagsAll: ["prod"], tagsNone: ["web"] })).toEqual(["db-data"]);
  });

  it("filters by pool and power state (empty: all)", () => {
    expect(names({ poolIds: [poolB.id] })).toEqual(["app-dr"]);
    expect(names({ powerStates: ["Running", "Paused"], poolIds: [poolA.id] })).toEqual(["db-data", "web-ext4"]);
  });

  it("leaves out cairn:no-bak even when the pattern asks for it", () => {
    const result = previewSmartSelection(pattern({ tagsAny: ["cairn:no-bak"] }), vms);
    expect(result.selected).toEqual([]);
    expect(result.excluded.map((vm) => vm.name)).toEqual(["scratch"]);
  });
});

describe("SmartSelectionPreview", () => {
  it("lists the VMs the pattern selects now and the ones cairn:no-bak leaves out", () => {
    render(SmartSelectionPreview, { pattern: pattern({ powerStates: ["Running", "Suspended"] }), vms });
    expect(screen.getByRole("heading", { name: "Selects 2 VMs now" })).toBeTruthy();
    const items = screen.getAllByRole("listitem").map((li) => li.querySelector("strong")!.textContent);
    expect(items).toEqual(["app-dr", "web-ext4"]);
    expect(screen.getByText(/Left out by the/).textContent).toContain("scratch");
  });

  it("updates live as the pattern changes", async () => {
    const view = render(SmartSelectionPreview, { pattern: pattern({ tagsAll: ["prod"] }), vms });
    expect(screen.getByRole("heading", { name: "Selects 3 VMs now" })).toBeTruthy();
    await view.rerender({ pattern: pattern({ tagsAll: ["prod"], tagsNone: ["web"] }), vms });
    expect(screen.getByRole("heading", { name: "Selects 1 VM now" })).toBeTruthy();
  });

  it("says a run would back up nothing when nothing matches", () => {
    render(SmartSelectionPreview, { pattern: pattern({ tagsAll: ["nope"] }), vms });
    expect(screen.getByRole("heading", { name: "This pattern selects no VM now" })).toBeTruthy();
    expect(screen.getByText(/A run would back up nothing/)).toBeTruthy();
  });
});
