// The Account page's parts: changing your password, your sessions, your API tokens (with a fake API client).
import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/svelte";
import { ApiError, ErrorCode } from "$lib/api/errors.js";
import ApiTokenList from "$lib/components/ApiTokenList.svelte";
import ChangePasswordForm from "$lib/components/ChangePasswordForm.svelte";
import SessionList from "$lib/components/SessionList.svelte";
import { badInput, fakeApi, findElement, type } from "./harness/fake-api.js";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

function fillPassword(current: string, next: string, again: string) {
  type(screen.getByLabelText("Current password"), current);
  type(screen.getByLabelText("New password"), next);
  type(screen.getByLabelText("New password again"), again);
  screen.getByRole("button", { name: "Change password" }).click();
}

const fieldError = (label: string) => {
  const input = screen.getByLabelText(label);
  const id = input.getAttribute("aria-describedby");
  return input.getAttribute("aria-invalid") === "true" && id ? (document.getElementById(id)?.textContent ?? null) : null;
};

describe("ChangePasswordForm", () => {
  it("checks the server's rules before sending: current given, 8 characters, not the user name, typed twice alike", async () => {
    const api = fakeApi({ ChangePassword: () => ({ changePassword: true }) });
    render(ChangePasswordForm, { client: api.client, username: "jane.doe" });

    fillPassword("", "short", "short");
    await waitFor(() => expect(fieldError("Current password")).toBe("Give your current password."));
    expect(fieldError("New password")).toBe("Use at least 8 characters.");

    fillPassword("old-password", "JANE.DOE", "JANE.DOE");
    await waitFor(() => expect(fieldError("New password")).toBe("Choose something other than the user name."));
    expect(fieldError("Current password")).toBeNull();

    fillPassword("old-password", "old-password", "old-password");
    await waitFor(() => expect(fieldError("New password")).toBe("Choose a password other than your current one."));

    fillPassword("old-password", "a new long one", "a new long 0ne");
    await waitFor(() => expect(fieldError("New password again")).toBe("The two passwords differ: type the same one twice."));
    expect(fieldError("New password")).toBeNull();
    expect(api.calls).toEqual([]);
  });

  it("sends the exact mutation, says it is done, clears the fields and tells the page", async () => {
    const api = fakeApi({ ChangePassword: () => ({ changePassword: true }) });
    const onChanged = vi.fn();
    render(ChangePasswordForm, { client: api.client, username: "jane", onChanged });

    fillPassword("old-password", "a new long one", "a new long one");
    await screen.findByText(/Password changed\. Your other sessions were signed out/);
    expect(api.callsOf("ChangePassword")).toEqual([{ currentPassword: "old-password", newPassword: "a new long one" }]);
    expect(onChanged).toHaveBeenCalledOnce();
    expect((screen.getByLabelText("Current password") as HTMLInputElement).value).toBe("");
    expect((screen.getByLabelText("New password again") as HTMLInputElement).value).toBe("");
  });

  it("shows the server's refusal at its field (a wrong current password), and a throttling refusal above the form", async () => {
    let answer: unknown = badInput("currentPassword", "is not your current password");
    const api = fakeApi({
      ChangePassword: () => {
        throw answer;
      },
    });
    render(ChangePasswordForm, { client: api.client, username: "jane" });

    fillPassword("wrong-password", "a new long one", "a new long one");
    await waitFor(() => expect(fieldError("Current password")).toBe("Is not your current password"));
    expect(screen.queryByRole("alert")).toBeNull();

    answer = new ApiError("Too many failed sign-ins for this user name; try again in 4 seconds.", "RATE_LIMITED");
    fillPassword("wrong-password", "a new long one", "a new long one");
    await waitFor(() =>
      expect(screen.getByRole("alert").textContent).toBe("Too many failed sign-ins for this user name; try again in 4 seconds."),
    );
    expect(fieldError("Current password")).toBeNull();
  });
});

const sessions = [
  {
    id: "s1",
    current: true,
    createdAt: "2026-12-01T08:00:00Z",
    expiresAt: "2026-12-08T08:00:00Z",
    lastUsedAt: "2026-12-03T06:00:00Z",
    createdFrom: "10.0.0.5",
  },
  {
    id: "s2",
    current: false,
    createdAt: "2026-11-30T08:00:00Z",
    expiresAt: "2026-12-07T08:00:00Z",
    lastUsedAt: null,
    createdFrom: "192.0.2.7",
  },
];

describe("SessionList", () => {
  it("marks this browser's session, ends another and reloads, and signs out when this one is ended", async () => {
    let live = [...sessions];
    const api = fakeApi({
      Sessions: () => ({ sessions: live }),
      RevokeSession: ({ id }) => {
        live = live.filter((s) => s.id !== id);
        return { revokeSession: true };
      },
    });
    const onSignedOut = vi.fn();
    render(SessionList, { client: api.client, onSignedOut });

    const current = await findElement('tr[data-session="s1"]');
    expect(within(current).getByText("This browser")).toBeTruthy();
    expect(within(current).getByText("10.0.0.5")).toBeTruthy();
    const other = document.querySelector('tr[data-session="s2"]') as HTMLElement;
    expect(within(other).queryByText("This browser")).toBeNull();

    await fireEvent.click(within(other).getByRole("button", { name: "End" }));
    await fireEvent.click(within(other).getByRole("button", { name: "End" })); // the confirmation's own button
    await waitFor(() => expect(document.querySelector('tr[data-session="s2"]')).toBeNull());
    expect(api.callsOf("RevokeSession")).toEqual([{ id: "s2" }]);
    expect(onSignedOut).not.toHaveBeenCalled();

    const mine = document.querySelector('tr[data-session="s1"]') as HTMLElement;
    await fireEvent.click(within(mine).getByRole("button", { name: "Sign out here" }));
    expect(within(mine).getByRole("group").getAttribute("aria-label")).toBe("End this session? You will be signed out.");
    await fireEvent.click(within(mine).getByRole("button", { name: "Sign out" }));
    await waitFor(() => expect(onSignedOut).toHaveBeenCalledOnce());
    expect(api.callsOf("RevokeSession")).toEqual([{ id: "s2" }, { id: "s1" }]);
  });
});

describe("ApiTokenList", () => {
  const token = (id: string, name: string, role: string, revokedAt: string | null = null) => ({
    id,
    name,
    role,
    createdAt: "2026-12-01T08:00:00Z",
    revokedAt,
    lastUsedAt: null,
    createdFrom: "10.0.0.5",
  });

  function setup(role: string) {
    let tokens = [token("t1", "backup-script", "VIEWER"), token("t0", "old", "VIEWER", "2026-12-02T08:00:00Z")];
    const api = fakeApi({
      ApiTokens: () => ({ apiTokens: tokens }),
      CreateApiToken: ({ name, role }) => {
        tokens = [token("t2", name as string, role as string), ...tokens];
        return { createApiToken: { id: "t2", name, role, token: "cairn_secret_123" } };
      },
      RevokeApiToken: ({ id }) => {
        tokens = tokens.map((t) => (t.id === id ? { ...t, revokedAt: "2026-12-03T07:00:00Z" } : t));
        return { revokeApiToken: true };
      },
    });
    render(ApiTokenList, { client: api.client, user: { id: "u7", role } });
    return api;
  }

  it("lists the user's own tokens (asking for that user's only), revoked ones marked and not revocable", async () => {
    const api = setup("OPERATOR");
    const revoked = await findElement('tr[data-token="old"]');
    expect(api.callsOf("ApiTokens")).toEqual([{ userId: "u7" }]);
    expect(within(revoked).getByText(/^revoked/)).toBeTruthy();
    expect(within(revoked).queryByRole("button")).toBeNull();
    const live = document.querySelector('tr[data-token="backup-script"]') as HTMLElement;
    expect(within(live).getByRole("button", { name: "Revoke" })).toBeTruthy();
  });

  it("offers only roles at or below the user's, requires a name, and shows the secret once with a copy button", async () => {
    const writeText = vi.fn(async () => {});
    vi.stubGlobal("navigator", { ...navigator, clipboard: { writeText } });
    const api = setup("OPERATOR");
    await fireEvent.click(await screen.findByRole("button", { name: "Create a token" }));
    const roleSelect = screen.getByLabelText("Role") as HTMLSelectElement;
    expect([...roleSelect.options].map((o) => o.value)).toEqual(["OPERATOR", "VIEWER"]);
    expect(roleSelect.value).toBe("VIEWER");

    await fireEvent.click(screen.getByRole("button", { name: "Create token" }));
    await waitFor(() => expect(fieldError("Name")).toBe("Give the token a name, e.g. the script or machine that will use it."));
    expect(api.callsOf("CreateApiToken")).toEqual([]);

    type(screen.getByLabelText("Name"), "  nightly report ");
    type(roleSelect, "OPERATOR");
    await fireEvent.click(screen.getByRole("button", { name: "Create token" }));
    const secret = (await screen.findByLabelText("The new token's secret")) as HTMLInputElement;
    expect(api.callsOf("CreateApiToken")).toEqual([{ name: "nightly report", role: "OPERATOR" }]);
    expect(secret.value).toBe("cairn_secret_123");
    expect(secret.readOnly).toBe(true);
    await waitFor(() => expect(document.querySelector('tr[data-token="nightly report"]')).not.toBeNull());

    await fireEvent.click(screen.getByRole("button", { name: "Copy" }));
    await screen.findByRole("button", { name: "Copied" });
    expect(writeText).toHaveBeenCalledWith("cairn_secret_123");

    // Once dismissed, the secret is gone for good: the list never carries it.
    await fireEvent.click(screen.getByRole("button", { name: "Done" }));
    expect(screen.queryByLabelText("The new token's secret")).toBeNull();
    expect(document.body.textContent).not.toContain("cairn_secret_123");
  });

  it("offers a VIEWER only VIEWER tokens, and shows the server's refusal above the form", async () => {
    const api = fakeApi({
      ApiTokens: () => ({ apiTokens: [] }),
      CreateApiToken: () => {
        throw new ApiError(
          "API tokens cannot create API tokens: sign in with your password and create the token from that session.",
          ErrorCode.Forbidden,
        );
      },
    });
    render(ApiTokenList, { client: api.client, user: { id: "u8", role: "VIEWER" } });
    await screen.findByText("No API token.");
    await fireEvent.click(screen.getByRole("button", { name: "Create a token" }));
    expect([...(screen.getByLabelText("Role") as HTMLSelectElement).options].map((o) => o.value)).toEqual(["VIEWER"]);
    type(screen.getByLabelText("Name"), "ci");
    await fireEvent.click(screen.getByRole("button", { name: "Create token" }));
    await waitFor(() => expect(screen.getByRole("alert").textContent).toContain("API tokens cannot create API tokens"));
  });

  it("revokes a token after confirmation and shows it revoked", async () => {
    const api = setup("ADMIN");
    const row = await findElement('tr[data-token="backup-script"]');
    await fireEvent.click(within(row).getByRole("button", { name: "Revoke" }));
    expect(within(row).getByRole("group").getAttribute("aria-label")).toBe("Revoke backup-script? What uses it stops working at once.");
    await fireEvent.click(within(row).getAllByRole("button", { name: "Revoke" })[0]!);
    await waitFor(() =>
      expect(within(document.querySelector('tr[data-token="backup-script"]') as HTMLElement).getByText(/^revoked/)).toBeTruthy(),
    );
    expect(api.callsOf("RevokeApiToken")).toEqual([{ id: "t1" }]);
  });
});
