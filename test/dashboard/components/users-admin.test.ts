// The Users page (ADMIN only) and its forms, and what other roles see: no Users/Audit in the nav, a refusal if opened.
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/svelte";
import { ApiError, ErrorCode } from "$lib/api/errors.js";
import type { UserRecord } from "$lib/api/operations-users.js";
import ResetPasswordForm from "$lib/components/ResetPasswordForm.svelte";
import UserForm from "$lib/components/UserForm.svelte";
import { sectionsFor } from "$lib/sections.js";
import AdminPageHarness from "./harness/AdminPageHarness.svelte";
import { badInput, fakeApi, findElement, type } from "./harness/fake-api.js";
import ShellHarness from "./harness/ShellHarness.svelte";

afterEach(cleanup);

const fieldError = (label: string) => {
  const input = screen.getByLabelText(label);
  const id = input.getAttribute("aria-describedby");
  return input.getAttribute("aria-invalid") === "true" && id ? (document.getElementById(id)?.textContent ?? null) : null;
};

const user = (id: string, username: string, role: UserRecord["role"], disabled = false): UserRecord => ({
  id,
  username,
  role,
  disabled,
  createdAt: "2026-12-01T08:00:00Z",
});

describe("role gating", () => {
  it("shows Users and Audit in the nav to an ADMIN only", () => {
    const labels = (role: string) => sectionsFor(role).map((s) => s.label);
    expect(labels("ADMIN")).toEqual([
      "Overview",
      "Jobs",
      "VMs",
      "Logs",
      "Reports",
      "Restore",
      "Metadata",
      "Remotes",
      "Pools",
      "Users",
      "Audit",
    ]);
    expect(labels("OPERATOR")).toEqual(["Overview", "Jobs", "VMs", "Logs", "Reports", "Restore", "Metadata", "Remotes", "Pools"]);
    expect(labels("VIEWER")).toEqual(labels("OPERATOR"));

    for (const [role, shown] of [
      ["ADMIN", true],
      ["OPERATOR", false],
      ["VIEWER", false],
    ] as const) {
      render(ShellHarness, { role });
      const nav = screen.getByRole("navigation", { name: "Sections" });
      expect(within(nav).queryByRole("link", { name: "Users" }) !== null).toBe(shown);
      expect(within(nav).queryByRole("link", { name: "Audit" }) !== null).toBe(shown);
      // Everyone reaches their own account from their name.
      expect(screen.getByRole("link", { name: `Signed in as jane (${role})` }).getAttribute("href")).toBe("/account");
      cleanup();
    }
  });

  it("refuses the Users and Audit pages to other roles in words, without asking the server anything", () => {
    for (const role of ["OPERATOR", "VIEWER"]) {
      for (const page of ["users", "audit"] as const) {
        const api = fakeApi({});
        render(AdminPageHarness, { client: api.client, role, page });
        const alert = screen.getByRole("alert");
        expect(alert.textContent).toContain(
          page === "users" ? "User management is for administrators." : "The audit log is for administrators.",
        );
        expect(alert.textContent).toContain(`You are signed in as ${role}`);
        expect(api.calls).toEqual([]);
        cleanup();
      }
    }
  });
});

describe("UserForm", () => {
  function setup(
    createUser: (variables: Record<string, unknown>) => unknown = ({ input }) => ({
      createUser: { ...user("u9", "", "VIEWER"), ...(input as object) },
    }),
  ) {
    const saved: unknown[] = [];
    const api = fakeApi({ CreateUser: createUser });
    render(UserForm, { client: api.client, onSaved: (u: unknown) => void saved.push(u), onCancel: () => {} });
    return { api, saved };
  }

  function fill(username: string, password: string, again = password, role?: string) {
    type(screen.getByLabelText("User name"), username);
    if (role) type(screen.getByLabelText("Role"), role);
    type(screen.getByLabelText("Initial password"), password);
    type(screen.getByLabelText("Initial password again"), again);
    screen.getByRole("button", { name: "Add user" }).click();
  }

  it("checks the name and the password as the server would before sending anything", async () => {
    const { api } = setup();
    fill("", "");
    await waitFor(() => expect(fieldError("User name")).toBe("Give a user name."));
    expect(fieldError("Initial password")).toBe("Use at least 8 characters.");

    fill("jane doe", "1234567");
    await waitFor(() => expect(fieldError("User name")).toMatch(/^Use only letters, digits and \. _ @ -/));
    expect(fieldError("Initial password")).toBe("Use at least 8 characters.");

    fill("x".repeat(65), "Janedoe1");
    await waitFor(() => expect(fieldError("User name")).toBe("Use at most 64 characters."));

    fill("janedoe1", "JANEDOE1");
    await waitFor(() => expect(fieldError("Initial password")).toBe("Choose something other than the user name."));
    expect(fieldError("User name")).toBeNull();

    fill("jane.doe", "long enough", "long enougH");
    await waitFor(() => expect(fieldError("Initial password again")).toBe("The two passwords differ: type the same one twice."));
    expect(fieldError("Initial password")).toBeNull();
    expect(api.calls).toEqual([]);
  });

  it("creates the user with the role chosen (VIEWER unless changed)", async () => {
    const { api, saved } = setup();
    expect((screen.getByLabelText("Role") as HTMLSelectElement).value).toBe("VIEWER");
    fill(" jane.doe ", "long enough", "long enough", "OPERATOR");
    await waitFor(() => expect(saved).toHaveLength(1));
    expect(api.callsOf("CreateUser")).toEqual([{ input: { username: "jane.doe", role: "OPERATOR", password: "long enough" } }]);
  });

  it("shows a taken name (CONFLICT) and the server's bad input at their fields", async () => {
    let refusal: ApiError = new ApiError("A user named Jane.Doe already exists: choose another user name.", ErrorCode.Conflict, [
      {
        message: "A user named Jane.Doe already exists: choose another user name.",
        extensions: { code: "CONFLICT", field: "input.username" },
      },
    ]);
    const { saved } = setup(() => {
      throw refusal;
    });
    fill("jane.doe", "long enough");
    await waitFor(() => expect(fieldError("User name")).toBe("A user named Jane.Doe already exists: choose another user name."));

    refusal = badInput("input.password", "must be at most 1024 characters");
    fill("jane.doe", "long enough");
    await waitFor(() => expect(fieldError("Initial password")).toBe("Must be at most 1024 characters"));
    expect(fieldError("User name")).toBeNull();
    expect(saved).toEqual([]);
  });
});

describe("ResetPasswordForm", () => {
  it("checks the new password against the user's name and its confirmation, then sets it", async () => {
    const api = fakeApi({ ResetUserPassword: () => ({ resetUserPassword: true }) });
    let done = 0;
    render(ResetPasswordForm, { client: api.client, user: { id: "u2", username: "bob.smith" }, onDone: () => done++, onCancel: () => {} });
    const submit = () => screen.getByRole("button", { name: "Set password" }).click();

    type(screen.getByLabelText("New password for bob.smith"), "Bob.Smith");
    submit();
    await waitFor(() => expect(fieldError("New password for bob.smith")).toBe("Choose something other than the user name."));
    type(screen.getByLabelText("New password for bob.smith"), "a fresh password");
    type(screen.getByLabelText("Again"), "a fresh passw0rd");
    submit();
    await waitFor(() => expect(fieldError("Again")).toBe("The two passwords differ: type the same one twice."));
    expect(api.calls).toEqual([]);

    type(screen.getByLabelText("Again"), "a fresh password");
    submit();
    await waitFor(() => expect(done).toBe(1));
    expect(api.callsOf("ResetUserPassword")).toEqual([{ id: "u2", password: "a fresh password" }]);
  });
});

describe("UsersAdmin", () => {
  function setup(onSelfChanged?: (user: UserRecord | null) => void) {
    const lastAdmin =
      "admin is the last enabled ADMIN and cannot be made OPERATOR: make another user ADMIN (or enable one) first, so that someone can still administer Cairn.";
    let users = [user("u-admin", "admin", "ADMIN"), user("u2", "bob", "OPERATOR")];
    const admins = () => users.filter((u) => u.role === "ADMIN" && !u.disabled).length;
    const api = fakeApi({
      Users: () => ({ users }),
      CreateUser: ({ input }) => {
        const created = user("u3", (input as { username: string }).username, (input as { role: UserRecord["role"] }).role);
        users = [...users, created];
        return { createUser: created };
      },
      UpdateUser: ({ id, input }) => {
        const target = users.find((u) => u.id === id)!;
        const change = input as Partial<UserRecord>;
        if (target.role === "ADMIN" && admins() === 1 && ((change.role && change.role !== "ADMIN") || change.disabled)) {
          throw new ApiError(
            lastAdmin.replace("be made OPERATOR", change.disabled ? "be disabled" : `be made ${change.role}`),
            ErrorCode.Conflict,
          );
        }
        users = users.map((u) => (u.id === id ? { ...u, ...change } : u));
        return { updateUser: users.find((u) => u.id === id) };
      },
      DeleteUser: ({ id }) => {
        if (users.find((u) => u.id === id)?.role === "ADMIN" && admins() === 1)
          throw new ApiError(lastAdmin.replace("be made OPERATOR", "be deleted"), ErrorCode.Conflict);
        users = users.filter((u) => u.id !== id);
        return { deleteUser: true };
      },
      ResetUserPassword: () => ({ resetUserPassword: true }),
    });
    render(AdminPageHarness, { client: api.client, role: "ADMIN", page: "users", onSelfChanged });
    return { api, lastAdmin };
  }

  it("lists every user with role, state and creation; the signed-in one is marked and has no password reset", async () => {
    setup();
    const me = await findElement('tr[data-user="admin"]');
    expect(within(me).getByText("you")).toBeTruthy();
    expect(within(me).queryByRole("button", { name: "Reset password" })).toBeNull();
    expect(within(me).getByRole("link", { name: "Your password" }).getAttribute("href")).toBe("/account");
    const bob = await findElement('tr[data-user="bob"]');
    expect((within(bob).getByLabelText("Role of bob") as HTMLSelectElement).value).toBe("OPERATOR");
    expect(within(bob).getByText("Enabled")).toBeTruthy();
    expect([...screen.getByRole("table").querySelectorAll("th")].map((th) => th.textContent?.trim())).toEqual([
      "User",
      "Role",
      "State",
      "Created",
      "Actions",
    ]);
  });

  it("adds a user and says so", async () => {
    const { api } = setup();
    await findElement('tr[data-user="bob"]');
    await fireEvent.click(screen.getByRole("button", { name: "Add a user" }));
    type(screen.getByLabelText("User name"), "carol");
    type(screen.getByLabelText("Initial password"), "long enough");
    type(screen.getByLabelText("Initial password again"), "long enough");
    await fireEvent.click(screen.getByRole("button", { name: "Add user" }));
    await screen.findByText("carol was added as VIEWER.");
    await findElement('tr[data-user="carol"]');
    expect(screen.queryByLabelText("User name")).toBeNull();
    expect(api.callsOf("CreateUser")).toHaveLength(1);
  });

  it("changes a role, disables and enables a user", async () => {
    const { api } = setup();
    const bob = await findElement('tr[data-user="bob"]');
    type(within(bob).getByLabelText("Role of bob"), "VIEWER");
    await waitFor(() => expect(api.callsOf("UpdateUser")).toEqual([{ id: "u2", input: { role: "VIEWER" } }]));

    await fireEvent.click(within(bob).getByRole("button", { name: "Disable" }));
    expect(within(bob).getByRole("group").getAttribute("aria-label")).toBe("Disable bob? Their sessions and tokens stop working at once.");
    await fireEvent.click(within(bob).getAllByRole("button", { name: "Disable" })[0]!);
    await waitFor(() => expect(within(bob).getByText("Disabled")).toBeTruthy());
    expect(api.callsOf("UpdateUser").at(-1)).toEqual({ id: "u2", input: { disabled: true } });

    await fireEvent.click(within(bob).getByRole("button", { name: "Enable" }));
    await waitFor(() => expect(within(bob).getByText("Enabled")).toBeTruthy());
    expect(api.callsOf("UpdateUser").at(-1)).toEqual({ id: "u2", input: { disabled: false } });
  });

  it("shows the server's refusal of the last ADMIN in its words, and keeps showing the role that is stored", async () => {
    const { lastAdmin } = setup();
    const me = await findElement('tr[data-user="admin"]');
    const select = within(me).getByLabelText("Role of admin") as HTMLSelectElement;
    type(select, "OPERATOR");
    await waitFor(() => expect(within(me).getByRole("alert").textContent).toBe(lastAdmin));
    await waitFor(() =>
      expect((within(document.querySelector('tr[data-user="admin"]')!).getByLabelText("Role of admin") as HTMLSelectElement).value).toBe(
        "ADMIN",
      ),
    );

    const row = () => document.querySelector('tr[data-user="admin"]') as HTMLElement;
    await fireEvent.click(within(row()).getByRole("button", { name: "Delete" }));
    await fireEvent.click(within(row()).getAllByRole("button", { name: "Delete" })[0]!);
    await waitFor(() =>
      expect(
        within(row())
          .getAllByRole("alert")
          .map((a) => a.textContent),
      ).toContain(lastAdmin.replace("be made OPERATOR", "be deleted")),
    );
    expect(row()).not.toBeNull();
  });

  it("deletes another user after confirmation, and resets another's password inline", async () => {
    const { api } = setup();
    const bob = await findElement('tr[data-user="bob"]');
    await fireEvent.click(within(bob).getByRole("button", { name: "Reset password" }));
    type(within(bob).getByLabelText("New password for bob"), "a fresh password");
    type(within(bob).getByLabelText("Again"), "a fresh password");
    await fireEvent.click(within(bob).getByRole("button", { name: "Set password" }));
    await screen.findByText("bob's password was set; their sessions and API tokens were ended.");
    expect(api.callsOf("ResetUserPassword")).toEqual([{ id: "u2", password: "a fresh password" }]);

    await fireEvent.click(within(bob).getByRole("button", { name: "Delete" }));
    expect(within(bob).getByRole("group").getAttribute("aria-label")).toBe("Delete bob? Their sessions and tokens go with them.");
    await fireEvent.click(within(bob).getAllByRole("button", { name: "Delete" })[0]!);
    await waitFor(() => expect(document.querySelector('tr[data-user="bob"]')).toBeNull());
    expect(api.callsOf("DeleteUser")).toEqual([{ id: "u2" }]);
  });

  it("tells the app when the signed-in ADMIN demotes or deletes themself (another ADMIN remaining)", async () => {
    const changes: (UserRecord | null)[] = [];
    setup((change) => void changes.push(change));
    const bob = await findElement('tr[data-user="bob"]');
    type(within(bob).getByLabelText("Role of bob"), "ADMIN");
    await waitFor(() => expect((within(bob).getByLabelText("Role of bob") as HTMLSelectElement).value).toBe("ADMIN"));
    expect(changes).toEqual([]); // someone else's change

    const me = document.querySelector('tr[data-user="admin"]') as HTMLElement;
    type(within(me).getByLabelText("Role of admin"), "VIEWER");
    await waitFor(() => expect(changes.map((c) => c?.role)).toEqual(["VIEWER"]));
    await fireEvent.click(within(me).getByRole("button", { name: "Delete" }));
    await fireEvent.click(within(me).getAllByRole("button", { name: "Delete" })[0]!);
    await waitFor(() => expect(changes.at(-1)).toBeNull());
  });
});
