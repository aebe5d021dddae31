import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen } from "@testing-library/svelte";
import RunNowButton from "$lib/components/RunNowButton.svelte";

afterEach(cleanup);

const nightly = { id: "s1", name: "nightly", cron: "30 3 * * 1-5", timezone: "Europe/Paris" };
const weekly = { id: "s2", name: null, cron: "0 5 * * 0", timezone: "UTC" };

function setup(schedules: (typeof nightly | typeof weekly)[]) {
  const runs: (string | null)[] = [];
  render(RunNowButton, { schedules, onRun: (scheduleId: string | null) => runs.push(scheduleId) });
  return runs;
}

describe("RunNowButton", () => {
  it("runs at once when the job has one schedule or none, letting the server pick it", async () => {
    for (const schedules of [[], [nightly]]) {
      const runs = setup(schedules);
      const button = screen.getByRole("button", { name: "Run now" });
      expect(button.getAttribute("aria-haspopup")).toBeNull();
      await fireEvent.click(button);
      expect(runs).toEqual([null]);
      cleanup();
    }
  });

  it("asks which schedule's retention the run keeps when there are several", async () => {
    const runs = setup([nightly, weekly]);
    const button = screen.getByRole("button", { name: "Run now ▾" });
    expect(button.getAttribute("aria-expanded")).toBe("false");
    await fireEvent.click(button);
    expect(button.getAttribute("aria-expanded")).toBe("true");
    const choices = screen
      .getAllByRole("button")
      .slice(1)
      .map((b) => b.textContent!.replace(/\s+/g, " ").trim());
    expect(choices).toEqual(["nightly 30 3 * * 1-5 Europe/Paris", "0 5 * * 0 UTC"]);
    expect(runs).toEqual([]);
    await fireEvent.click(screen.getByRole("button", { name: /0 5 \* \* 0/ }));
    expect(runs).toEqual(["s2"]);
    expect(screen.queryByRole("group")).toBeNull();
  });

  it("closes the choice with Escape and gives the focus back to the button", async () => {
    const runs = setup([nightly, weekly]);
    const button = screen.getByRole("button", { name: "Run now ▾" });
    await fireEvent.click(button);
    await fireEvent.keyDown(screen.getByRole("button", { name: /nightly/ }), { key: "Escape" });
    expect(screen.queryByRole("group")).toBeNull();
    expect(document.activeElement).toBe(button);
    expect(runs).toEqual([]);
  });
});
