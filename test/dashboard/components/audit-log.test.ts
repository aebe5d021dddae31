// The audit page (ADMIN only): its entries in words, its filters as the API takes them, its pages and empty states.
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/svelte";
import type { AuditEntryRecord } from "$lib/api/operations-audit.js";
import { auditFilter, describeObject, EMPTY_AUDIT_FILTER } from "$lib/audit.js";
import AdminPageHarness from "./harness/AdminPageHarness.svelte";
import { fakeApi, findElement, type } from "./harness/fake-api.js";

afterEach(cleanup);

const entry = (id: string, over: Partial<AuditEntryRecord> = {}): AuditEntryRecord => ({
  id,
  at: "2026-12-03T07:00:00Z",
  userId: "u-admin",
  username: "admin",
  tokenId: "s1",
  tokenKind: "SESSION",
  tokenName: null,
  clientAddress: "10.0.0.5",
  transport: "HTTP",
  action: "createUser",
  objectType: "User",
  objectId: "u2",
  objectName: "bob",
  success: true,
  errorCode: null,
  message: null,
  ...over,
});

const ENTRIES = [
  entry("e3", { action: "updateUser", username: "admin", tokenKind: "API", tokenName: "ci", transport: "WS" }),
  entry("e2", {
    action: "deleteUser",
    success: false,
    errorCode: "CONFLICT",
    message: "admin is the last enabled ADMIN and cannot be deleted.",
  }),
  entry("e1", {
    action: "login",
    userId: null,
    username: "mallory",
    tokenId: null,
    tokenKind: null,
    objectId: null,
    objectName: "mallory",
    success: false,
    errorCode: "UNAUTHENTICATED",
  }),
];

/** Pages of 2 (the harness's page size), the cursor being the index to start at, as the server would answer. */
function setup(entries: AuditEntryRecord[] = ENTRIES) {
  const api = fakeApi({
    Users: () => ({ users: [{ id: "u-admin", username: "admin", role: "ADMIN", disabled: false, createdAt: "2026-12-01T08:00:00Z" }] }),
    AuditLog: ({ first, after }) => {
      const start = after ? Number(after) : 0;
      const nodes = entries.slice(start, start + (first as number));
      const end = start + nodes.length;
      return { auditLog: { totalCount: entries.length, pageInfo: { hasNextPage: end < entries.length, endCursor: String(end) }, nodes } };
    },
  });
  render(AdminPageHarness, { client: api.client, role: "ADMIN", page: "audit" });
  return api;
}

const shownActions = () => [...document.querySelectorAll("tr[data-action]")].map((row) => row.getAttribute("data-action"));

describe("AuditLog", () => {
  it("shows each entry in words: when, who and how, what, on which object, from where, and how it ended", async () => {
    const api = setup();
    const update = await findElement('tr[data-action="updateUser"]');
    expect(api.callsOf("AuditLog")[0]).toEqual({ filter: {}, first: 2, after: null });
    expect(within(update).getByText("admin")).toBeTruthy();
    expect(within(update).getByText("API token ci")).toBeTruthy();
    expect(within(update).getByText("user bob")).toBeTruthy();
    expect(within(update).getByText("graphql-ws")).toBeTruthy();
    expect(within(update).getByText("✓ Done")).toBeTruthy();

    const refused = document.querySelector('tr[data-action="deleteUser"]') as HTMLElement;
    expect(within(refused).getByText("session")).toBeTruthy();
    expect(within(refused).getByText("✗ CONFLICT")).toBeTruthy();
    expect(within(refused).getByText("admin is the last enabled ADMIN and cannot be deleted.")).toBeTruthy();
    expect(within(refused).getByText("10.0.0.5")).toBeTruthy();
    const labels = [...refused.querySelectorAll("td")].map((td) => td.getAttribute("data-label"));
    expect(labels).toEqual(["When", "Who", "Operation", "Object", "From", "Result"]);
    expect(screen.getByText("3 entries")).toBeTruthy();
  });

  it("pages to older and back to newer entries", async () => {
    const api = setup();
    await findElement('tr[data-action="deleteUser"]');
    expect(shownActions()).toEqual(["updateUser", "deleteUser"]);
    expect((screen.getByRole("button", { name: "Newer" }) as HTMLButtonElement).disabled).toBe(true);
    expect(screen.getByText("Page 1 of 2")).toBeTruthy();

    await fireEvent.click(screen.getByRole("button", { name: "Older" }));
    await waitFor(() => expect(shownActions()).toEqual(["login"]));
    expect(api.callsOf("AuditLog").at(-1)).toEqual({ filter: {}, first: 2, after: "2" });
    const who = document.querySelector('tr[data-action="login"] td[data-label="Who"]')!;
    expect(who.textContent?.trim()).toBe("mallory");
    expect((screen.getByRole("button", { name: "Older" }) as HTMLButtonElement).disabled).toBe(true);

    await fireEvent.click(screen.getByRole("button", { name: "Newer" }));
    await waitFor(() => expect(shownActions()).toEqual(["updateUser", "deleteUser"]));
    expect(api.callsOf("AuditLog").at(-1)).toEqual({ filter: {}, first: 2, after: null });
  });

  it("sends the filters the API offers, from the first page, and says when nothing matches", async () => {
    const api = setup([]);
    await screen.findByText("No entry yet.");
    // The user names are offered as suggestions.
    await waitFor(() => expect(document.querySelector('#audit-usernames option[value="admin"]')).not.toBeNull());
    type(screen.getByLabelText("User"), " admin ");
    type(screen.getByLabelText("Operation"), "updateUser");
    type(screen.getByLabelText("Result"), "failure");
    type(screen.getByLabelText("From"), "2026-12-01T00:00");
    type(screen.getByLabelText("To"), "2026-12-02T00:00");
    await fireEvent.click(screen.getByRole("button", { name: "Apply filters" }));
    await screen.findByText("No entry matches these filters.");
    expect(api.callsOf("AuditLog").at(-1)).toEqual({
      filter: {
        username: "admin",
        action: "updateUser",
        success: false,
        since: new Date("2026-12-01T00:00").toISOString(),
        until: new Date("2026-12-02T00:00").toISOString(),
      },
      first: 2,
      after: null,
    });

    await fireEvent.click(screen.getByRole("button", { name: "clear the filters" }));
    await screen.findByText("No entry yet.");
    expect(api.callsOf("AuditLog").at(-1)).toEqual({ filter: {}, first: 2, after: null });
    expect((screen.getByLabelText("User") as HTMLInputElement).value).toBe("");
  });

  it("refuses a filter the API would refuse, at its field, without asking", async () => {
    const api = setup();
    await findElement('tr[data-action="updateUser"]');
    const before = api.calls.length;
    type(screen.getByLabelText("Operation"), "drop table");
    type(screen.getByLabelText("From"), "2026-12-02T00:00");
    type(screen.getByLabelText("To"), "2026-12-01T00:00");
    await fireEvent.click(screen.getByRole("button", { name: "Apply filters" }));
    await waitFor(() => expect(screen.getByText("Give the name of an operation, such as createJob.")).toBeTruthy());
    expect(screen.getByText("Must be after “From”.")).toBeTruthy();
    expect(screen.getByLabelText("To").getAttribute("aria-invalid")).toBe("true");
    expect(api.calls.length).toBe(before);
  });
});

describe("auditFilter", () => {
  it("leaves out what is empty and maps the result to success", () => {
    expect(auditFilter(EMPTY_AUDIT_FILTER)).toEqual({ filter: {} });
    expect(auditFilter({ ...EMPTY_AUDIT_FILTER, result: "success" })).toEqual({ filter: { success: true } });
  });

  it("names the object, from the users known when the entry gives a user's id only", () => {
    expect(describeObject({ objectType: "RestorePoint", objectName: null, objectId: "rp1" })).toBe("restore point rp1");
    expect(
      describeObject({ objectType: "User", objectName: null, objectId: "u-admin" }, (id) => (id === "u-admin" ? "admin" : undefined)),
    ).toBe("user admin");
    expect(describeObject({ objectType: null, objectName: null, objectId: null })).toBe("–");
  });
});
