import { describe, expect, it, vi } from "vitest";
import { render, screen, cleanup } from "@testing-library/svelte";
import { afterEach } from "vitest";
import type { ApiClient } from "$lib/api/client.js";
import { ApiError, ErrorCode } from "$lib/api/errors.js";
import { LoginMutation, type AuthPayload } from "$lib/api/operations-session.js";
import SignInForm from "$lib/components/SignInForm.svelte";

afterEach(cleanup);

const admin: AuthPayload = { token: "t0ken", user: { id: "1", username: "admin", role: "ADMIN" } };

/** A client whose every request is recorded and answered by `answer`. */
function fakeClient(answer: () => Promise<unknown>) {
  const calls: { document: unknown; variables: unknown }[] = [];
  const client: ApiClient = {
    request: (document, variables) => {
      calls.push({ document, variables });
      return answer() as never;
    },
  };
  return { client, calls };
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function fillAndSubmit(username: string, password: string) {
  (screen.getByLabelText("Username") as HTMLInputElement).value = username;
  screen.getByLabelText("Username").dispatchEvent(new Event("input", { bubbles: true }));
  (screen.getByLabelText("Password") as HTMLInputElement).value = password;
  screen.getByLabelText("Password").dispatchEvent(new Event("input", { bubbles: true }));
  screen.getByRole("button", { name: "Sign in" }).click();
}

describe("SignInForm", () => {
  it("labels its fields and asks the browser for the saved credentials", () => {
    const { client } = fakeClient(() => new Promise(() => {}));
    render(SignInForm, { client, onSignedIn: () => {} });

    expect(screen.getByRole("heading", { name: "Sign in to Cairn" })).toBeTruthy();
    expect(screen.getByLabelText("Username").getAttribute("autocomplete")).toBe("username");
    expect(screen.getByLabelText("Password").getAttribute("type")).toBe("password");
    expect(screen.getByLabelText("Password").getAttribute("autocomplete")).toBe("current-password");
  });

  it("sends the typed login mutation with the username and password, then hands over the token and user", async () => {
    const { client, calls } = fakeClient(async () => ({ login: admin }));
    const onSignedIn = vi.fn();
    render(SignInForm, { client, onSignedIn });

    await fillAndSubmit(" admin ", "s3cret");

    await vi.waitFor(() => expect(onSignedIn).toHaveBeenCalledWith(admin));
    expect(calls).toHaveLength(1);
    expect(calls[0]?.document).toBe(LoginMutation);
    expect(calls[0]?.variables).toEqual({ username: "admin", password: "s3cret" });
  });

  it("disables the button while the sign-in is in flight, and enables it again when it ends", async () => {
    const answer = deferred<unknown>();
    const { client, calls } = fakeClient(() => answer.promise);
    render(SignInForm, { client, onSignedIn: () => {} });

    await fillAndSubmit("admin", "s3cret");

    const busy = await screen.findByRole("button", { name: "Signing in…" });
    expect((busy as HTMLButtonElement).disabled).toBe(true);
    busy.closest("form")!.requestSubmit();
    expect(calls).toHaveLength(1); // a second submit while busy sends nothing

    answer.reject(new ApiError("Invalid username or password", ErrorCode.Unauthenticated));
    const ready = await screen.findByRole("button", { name: "Sign in" });
    expect((ready as HTMLButtonElement).disabled).toBe(false);
  });

  it("shows the server's error message at the form and does not sign in", async () => {
    const { client } = fakeClient(() => Promise.reject(new ApiError("Invalid username or password", ErrorCode.Unauthenticated)));
    const onSignedIn = vi.fn();
    render(SignInForm, { client, onSignedIn });

    await fillAndSubmit("admin", "wrong");

    const alert = await screen.findByRole("alert");
    await vi.waitFor(() => expect(alert.textContent?.trim()).toBe("Invalid username or password"));
    expect(onSignedIn).not.toHaveBeenCalled();
    expect(screen.getByLabelText("Password").getAttribute("aria-invalid")).toBe("true");
    expect(screen.getByLabelText("Password").getAttribute("aria-describedby")).toBe(alert.id);
    expect(document.activeElement).toBe(screen.getByLabelText("Password"));
  });

  it("says so when the server cannot be reached", async () => {
    const { client } = fakeClient(() =>
      Promise.reject(new ApiError("Could not reach the Cairn server (Failed to fetch).", ErrorCode.Network)),
    );
    render(SignInForm, { client, onSignedIn: () => {} });

    await fillAndSubmit("admin", "s3cret");

    await vi.waitFor(() => expect(screen.getByRole("alert").textContent).toContain("Could not reach the Cairn server"));
  });
});
