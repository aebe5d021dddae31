import { describe, expect, it } from "vitest";
import { draftToInput, emptyDraft } from "$lib/job-draft.js";

describe("a job draft sent to the API", () => {
  it("splits the report addresses typed with commas, spaces or new lines, and sends an empty webhook as none", () => {
    const draft = { ...emptyDraft(), name: "nightly", reportEmails: "ops@example.net, backup@example.net\nboss@example.net;", reportWebhookUrl: "  " };
    const input = draftToInput(draft);
    expect(input.settings?.reportEmails).toEqual(["ops@example.net", "backup@example.net", "boss@example.net"]);
    expect(input.settings?.reportWebhookUrl).toBeNull();
  });

  it("keeps a webhook URL as typed, trimmed", () => {
    const input = draftToInput({ ...emptyDraft(), name: "nightly", reportWebhookUrl: " https://hooks.example.net/cairn " });
    expect(input.settings?.reportWebhookUrl).toBe("https://hooks.example.net/cairn");
    expect(input.settings?.reportEmails).toEqual([]);
  });
});
