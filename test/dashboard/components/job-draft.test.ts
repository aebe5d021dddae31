import { describe, expect, it } from "vitest";
import { draftToInput, emptyDraft } from "$lib/job-draft.js";

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
});
