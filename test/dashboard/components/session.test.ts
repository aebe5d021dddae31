// The session store is not a component; it is tested here because this is the dashboard project's folder.
import { describe, expect, it } from "vitest";
import { Session, TOKEN_KEY, nextPath, signInPath } from "$lib/stores/session.svelte.js";

const admin = { id: "1", username: "admin", role: "ADMIN" as const };

describe("Session", () => {
  it("keeps the token in storage across instances (a reload), but not the user, which is asked of the server", () => {
    const storage = new Map<string, string>();
    const fakeStorage = {
      getItem: (key: string) => storage.get(key) ?? null,
      setItem: (key: string, value: string) => void storage.set(key, value),
      removeItem: (key: string) => void storage.delete(key),
    };
    new Session(fakeStorage).signIn({ token: "t0ken", user: admin });
    expect(storage.get(TOKEN_KEY)).toBe("t0ken");

    const reloaded = new Session(fakeStorage);
    expect(reloaded.token).toBe("t0ken");
    expect(reloaded.user).toBeNull();

    reloaded.signOut();
    expect(storage.has(TOKEN_KEY)).toBe(false);
    expect(reloaded.token).toBeNull();
  });
});

describe("after sign-in", () => {
  const at = (path: string) => new URL(path, "https://cairn.example");

  it("returns to the page that sent the user to sign-in", () => {
    expect(signInPath(at("/logs?job=7"))).toBe("/signin?next=%2Flogs%3Fjob%3D7");
    expect(nextPath(at("/signin?next=%2Flogs%3Fjob%3D7"))).toBe("/logs?job=7");
    expect(signInPath(at("/"))).toBe("/signin");
    expect(nextPath(at("/signin"))).toBe("/");
  });

  it("never leaves the site, whatever next says", () => {
    for (const next of ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)", ""]) {
      expect(nextPath(at(`/signin?next=${encodeURIComponent(next)}`))).toBe("/");
    }
  });
});
