import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen } from "@testing-library/svelte";
import ScheduleEditor from "./harness/ScheduleEditorHarness.svelte";
import type { ScheduleDraft } from "$lib/job-draft.js";
import { previewCron } from "$lib/schedule.js";

afterEach(cleanup);

// A Friday, 12:00 UTC (13:00 in Paris, winter time).
const NOW = new Date("2026-11-27T12:00:00Z");

const schedule = (extra: Partial<ScheduleDraft> = {}): ScheduleDraft => ({
  name: "",
  cron: "0 2 * * *",
  timezone: "UTC",
  enabled: true,
  exportRetention: 7,
  copyRetention: 7,
  snapshotRetention: 0,
  gfsDays: 0,
  gfsWeeks: 0,
  gfsMonths: 0,
  gfsYears: 0,
  weekStart: "MONDAY",
  dayStartHour: 0,
  ...extra,
});

describe("previewCron", () => {
  it("gives the next runs in the schedule's time zone", () => {
    const paris = previewCron("30 3 * * 1-5", "Europe/Paris", 3, NOW);
    expect(paris.error).toBeNull();
    // 03:30 in Paris is 02:30 UTC in winter; Saturday and Sunday are skipped.
    expect(paris.nextRuns.map((d) => d.toISOString())).toEqual([
      "2026-11-30T02:30:00.000Z",
      "2026-12-01T02:30:00.000Z",
      "2026-12-02T02:30:00.000Z",
    ]);
    expect(paris.description).toMatch(/03:30.*Monday through Friday/);
  });

  it("refuses what the server refuses: bad expressions, unknown zones, every second", () => {
    expect(previewCron("61 * * * *", "UTC", 3, NOW).error).toMatch(/Not a valid cron expression/);
    expect(previewCron("0 2 * * *", "Mars/Olympus", 3, NOW).error).toMatch(/not a time zone/);
    expect(previewCron("* * * * * *", "UTC", 3, NOW).error).toMatch(/more than once a minute/);
    expect(previewCron("", "UTC", 3, NOW).error).toMatch(/Enter a cron expression/);
  });
});

describe("ScheduleEditor", () => {
  it("shows the expression in words and the next three runs, and follows edits", async () => {
    render(ScheduleEditor, { initial: schedule(), now: NOW });
    const preview = screen.getByTestId("cron-preview");
    expect(preview.textContent).toContain("At 02:00");
    expect(preview.querySelectorAll("li")).toHaveLength(3);
    expect(preview.querySelector("time")!.getAttribute("datetime")).toBe("2026-11-28T02:00:00.000Z");

    await fireEvent.input(screen.getByLabelText("Time zone"), { target: { value: "Europe/Paris" } });
    await fireEvent.input(screen.getByLabelText("Cron expression"), { target: { value: "30 3 * * 1-5" } });
    expect(preview.textContent).toMatch(/03:30.*Monday through Friday.*\(Europe\/Paris\)/);
    expect(preview.querySelector("time")!.getAttribute("datetime")).toBe("2026-11-30T02:30:00.000Z");
    expect(preview.querySelector("time")!.textContent).toMatch(/03:30/); // shown in the schedule's zone
    expect(JSON.parse(screen.getByTestId("bound").textContent!)).toMatchObject({ cron: "30 3 * * 1-5", timezone: "Europe/Paris" });
  });

  it("warns at the field while the expression is not valid", async () => {
    render(ScheduleEditor, { initial: schedule(), now: NOW });
    await fireEvent.input(screen.getByLabelText("Cron expression"), { target: { value: "every night" } });
    expect(screen.getByTestId("cron-preview").textContent).toMatch(/Not a valid cron expression/);
    expect(screen.getByLabelText("Cron expression").getAttribute("aria-invalid")).toBe("true");
  });

  it("asks for the retention the job's mode keeps its backups with", () => {
    render(ScheduleEditor, { initial: schedule(), index: 1, retention: "copyRetention", now: NOW });
    expect((screen.getByLabelText("Replicas kept on each SR") as HTMLInputElement).value).toBe("7");
    expect(screen.getByRole("group", { name: "Schedule 2" })).toBeTruthy();
  });
});
