// createResource with ResourceView, EmptyState and DataTable, as the pages use them (through a harness page).
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/svelte";
import { ApiError, ErrorCode } from "$lib/api/errors.js";
import ResourceHarness, { type Item } from "./harness/ResourceHarness.svelte";

afterEach(cleanup);

/** A load the test settles by hand, with the filter and the signal it was given. */
interface PendingLoad {
  filter: string;
  signal: AbortSignal;
  resolve: (items: Item[]) => void;
  reject: (error: unknown) => void;
}

function setup(options: { hideWhileLoading?: boolean } = {}) {
  const loads: PendingLoad[] = [];
  const load = (filter: string, signal: AbortSignal) =>
    new Promise<Item[]>((resolve, reject) => loads.push({ filter, signal, resolve, reject }));
  render(ResourceHarness, { load, ...options });
  return loads;
}

const disk = (id: string, name: string, size = 1): Item => ({ id, name, size });
const rowNames = () =>
  screen
    .queryAllByRole("row")
    .slice(1)
    .map((row) => row.getAttribute("data-item"));
const busy = () => document.querySelector('[aria-busy="true"]')?.textContent ?? null;

describe("createResource and ResourceView", () => {
  it("shows Loading… until the data comes, then the rows under the columns' headers", async () => {
    const loads = setup();
    expect(busy()).toBe("Loading…");
    expect(loads).toHaveLength(1);
    loads[0]!.resolve([disk("a", "alpha", 3), disk("b", "beta")]);
    await waitFor(() => expect(rowNames()).toEqual(["a", "b"]));
    expect(busy()).toBeNull();
    expect(screen.getByTestId("loading").textContent).toBe("false");

    const table = screen.getByRole("table");
    expect(table.closest(".table-wrap.stack")).not.toBeNull();
    expect(table.getAttribute("aria-labelledby")).toBe("items-title");
    const headers = within(table).getAllByRole("columnheader");
    expect(headers.map((th) => th.textContent)).toEqual(["Name", "Size", "Actions"]);
    expect(headers.map((th) => th.className)).toEqual(["", "number", ""]);
    expect(headers[2]!.querySelector(".visually-hidden")?.textContent).toBe("Actions");
  });

  it("shows what is missing and what to do about it when the list is empty", async () => {
    const loads = setup();
    loads[0]!.resolve([]);
    const title = await screen.findByText("Nothing here yet.");
    const box = title.closest(".empty-state")!;
    expect(box.querySelectorAll("p")).toHaveLength(2);
    expect(box.textContent).toContain("Add one on the new item page.");
    expect(screen.queryByRole("table")).toBeNull();
  });

  it("shows a failed load as an alert, and the data once a refresh succeeds", async () => {
    const loads = setup();
    loads[0]!.reject(new ApiError("Your role may not list items.", ErrorCode.Forbidden));
    expect((await screen.findByRole("alert")).textContent).toBe("Your role may not list items.");

    await fireEvent.click(screen.getByRole("button", { name: "Refresh" }));
    expect(screen.queryByRole("alert")).toBeNull();
    loads[1]!.resolve([disk("a", "alpha")]);
    await waitFor(() => expect(rowNames()).toEqual(["a"]));
  });

  it("keeps the rows while a refresh runs, instead of going back to Loading…", async () => {
    const loads = setup();
    loads[0]!.resolve([disk("a", "alpha")]);
    await waitFor(() => expect(rowNames()).toEqual(["a"]));

    await fireEvent.click(screen.getByRole("button", { name: "Refresh" }));
    expect(screen.getByTestId("loading").textContent).toBe("true");
    expect(rowNames()).toEqual(["a"]);
    expect(busy()).toBeNull();
    loads[1]!.resolve([disk("a", "alpha"), disk("c", "gamma")]);
    await waitFor(() => expect(rowNames()).toEqual(["a", "c"]));
  });

  it("loads again when a value the load reads changes, aborting the load before and dropping its late answer", async () => {
    const loads = setup();
    await fireEvent.input(screen.getByLabelText("Filter"), { target: { value: "be" } });
    expect(loads.map((l) => l.filter)).toEqual(["", "be"]);
    expect(loads[0]!.signal.aborted).toBe(true);
    expect(loads[1]!.signal.aborted).toBe(false);

    loads[1]!.resolve([disk("b", "beta")]);
    await waitFor(() => expect(rowNames()).toEqual(["b"]));
    loads[0]!.resolve([disk("a", "alpha"), disk("b", "beta")]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(rowNames()).toEqual(["b"]);
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("with hideWhileLoading, shows Loading… rather than the data of the choice before", async () => {
    const loads = setup({ hideWhileLoading: true });
    loads[0]!.resolve([disk("a", "alpha")]);
    await waitFor(() => expect(rowNames()).toEqual(["a"]));

    await fireEvent.input(screen.getByLabelText("Filter"), { target: { value: "be" } });
    expect(busy()).toBe("Loading…");
    expect(rowNames()).toEqual([]);
    loads[1]!.resolve([disk("b", "beta")]);
    await waitFor(() => expect(rowNames()).toEqual(["b"]));
  });

  it("updates a row in place when the page patches the data (as a live update does)", async () => {
    const loads = setup();
    loads[0]!.resolve([disk("a", "alpha", 3)]);
    const row = await waitFor(() => screen.getByRole("row", { name: /alpha/ }));
    await fireEvent.click(within(row).getByRole("button", { name: "Grow alpha" }));
    expect(within(row).getAllByRole("cell")[1]!.textContent).toBe("4");
    expect(screen.getByRole("row", { name: /alpha/ })).toBe(row);
  });
});
