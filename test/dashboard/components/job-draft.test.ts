import { describe, expect, it } from "vitest";
import { draftToInput, emptyDraft, formPartOf, gfsInWords, hourInWords, retentionSummary } from "$lib/job-draft.js";

describe("a job draft sent to the API", () => {
  it("splits the report addresses typed with commas, spaces or new lines, and sends an empty webhook as none", () => {
    const draft = {
      ...emptyDraft(),
      name: "nightly",
      reportEmails: "ops@example.net, backup@example.net\nboss@example.net;",
      reportWebhookUrl: "  ",
    };
    const input = draftToInput(draft);
    expect(input.settings?.reportEmails).toEqual(["ops@example.net", "backup@example.net", "boss@example.net"]);
    expect(input.settings?.reportWebhookUrl).toBeNull();
  });

  it("keeps a webhook URL as typed, trimmed", () => {
    const input = draftToInput({ ...emptyDraft(), name: "nightly", reportWebhookUrl: " https://hooks.example.net/cairn " });
    expect(input.settings?.reportWebhookUrl).toBe("https://hooks.example.net/cairn");
    expect(input.settings?.reportEmails).toEqual([]);
  });

  it("never sends the stored webhook's redacted form back: left out keeps it, remove clears it, a typed URL replaces it", () => {
    const stored = { ...emptyDraft(), name: "nightly", reportWebhookCurrent: "https://hooks.example.net/…" };
    expect(draftToInput(stored).settings).not.toHaveProperty("reportWebhookUrl");
    expect(draftToInput({ ...stored, reportWebhookRemove: true }).settings?.reportWebhookUrl).toBeNull();
    expect(draftToInput({ ...stored, reportWebhookUrl: "https://hooks.example.net/new" }).settings?.reportWebhookUrl).toBe(
      "https://hooks.example.net/new",
    );
    expect(JSON.stringify(draftToInput(stored))).not.toContain("…");
  });

  it("sends a VERIFY job with its verifyOlderThanDays, no retention and none of the snapshot settings", () => {
    const draft = {
      ...emptyDraft(),
      name: "weekly verify",
      mode: "VERIFY" as const,
      quiesce: true,
      healthCheckSrUuid: "sr-1",
      verifyOlderThanDays: 7,
      remoteIds: ["r1"],
    };
    const input = draftToInput(draft);
    expect(input.remoteIds).toEqual(["r1"]);
    expect(input.srUuids).toEqual([]);
    expect(input.settings).toMatchObject({
      verifyOlderThanDays: 7,
      quiesce: false,
      healthCheckSrUuid: null,
      compression: "NONE",
      fullInterval: 0,
    });
    expect(input.schedules?.[0]).toMatchObject({ exportRetention: 0, copyRetention: 0, snapshotRetention: 0 });
    expect(draftToInput({ ...draft, mode: "DELTA" }).settings?.verifyOlderThanDays).toBe(0);
  });

  it("sends CBT + NBD for a DELTA job only, with its connections", () => {
    const draft = { ...emptyDraft(), name: "cbt", mode: "DELTA" as const, cbtNbd: true, nbdConnections: 4 };
    expect(draftToInput(draft).settings).toMatchObject({ cbtNbd: true, nbdConnections: 4 });
    // Switching the form to FULL keeps the choice in the form but sends none (the server refuses cbtNbd on FULL).
    expect(draftToInput({ ...draft, mode: "FULL" }).settings).toMatchObject({ cbtNbd: false });
    expect(draftToInput({ ...emptyDraft(), name: "plain" }).settings).toMatchObject({ cbtNbd: false, nbdConnections: 2 });
  });

  it("sends GFS for FULL and DELTA jobs, and sends it off for the modes that keep no backup on a remote", () => {
    const draft = emptyDraft();
    draft.name = "gfs";
    Object.assign(draft.schedules[0]!, { gfsDays: 7, gfsWeeks: 4, gfsMonths: 12, gfsYears: 2, weekStart: "SUNDAY", dayStartHour: 6 });
    const gfs = { gfsDays: 7, gfsWeeks: 4, gfsMonths: 12, gfsYears: 2, weekStart: "SUNDAY", dayStartHour: 6 };
    expect(draftToInput(draft).schedules?.[0]).toMatchObject(gfs);
    expect(draftToInput({ ...draft, mode: "FULL" }).schedules?.[0]).toMatchObject(gfs);
    expect(draftToInput({ ...draft, mode: "ROLLING_SNAPSHOT" }).schedules?.[0]).toMatchObject({
      gfsDays: 0,
      gfsWeeks: 0,
      gfsMonths: 0,
      gfsYears: 0,
    });
  });
});

describe("GFS retention in the job form", () => {
  it("says GFS in words in the Retention line when it is on, and nothing of it when off", () => {
    const draft = emptyDraft();
    expect(retentionSummary(draft)).toBe("keep 7 backups, no snapshot");
    Object.assign(draft.schedules[0]!, { gfsDays: 7, gfsWeeks: 4, gfsMonths: 12 });
    expect(retentionSummary(draft)).toBe(
      "keep 7 backups + 1 per day for 7 days, per week for 4 weeks, per month for 12 months, no snapshot",
    );
    expect(gfsInWords({ gfsDays: 0, gfsWeeks: 0, gfsMonths: 0, gfsYears: 1 })).toBe("1 per year for 1 year");
    // Replicas have no GFS: the line leaves it out even when the form still holds values from a FULL job.
    expect(retentionSummary({ ...draft, mode: "DISASTER_RECOVERY" })).toBe("keep 7 replicas, no snapshot");
  });

  it("routes the API's GFS field errors to the Retention part", () => {
    for (const field of ["gfsDays", "gfsWeeks", "gfsMonths", "gfsYears", "weekStart", "dayStartHour"]) {
      expect(formPartOf(`schedules.0.${field}`)).toBe("retention");
    }
    expect(formPartOf("schedules.12.gfsYears")).toBe("retention");
  });

  it("shows a day's start hour as a clock time", () => {
    expect(hourInWords(0)).toBe("00:00");
    expect(hourInWords(23)).toBe("23:00");
  });
});
