/**
 * Who is signed in. The token lives in localStorage so a reload or a new tab stays signed in; the user is
 * asked of the server (`me`) after a reload rather than trusted from storage.
 */
import { createContext } from "svelte";
import type { AuthPayload, SignedInUser } from "$lib/api/operations-session.js";

/** The localStorage key of the bearer token. */
export const TOKEN_KEY = "cairn.token";

export class Session {
  /** The bearer token, or null when signed out. */
  token = $state<string | null>(null);
  /** The signed-in user; null until sign-in, or until `me` has answered after a reload. */
  user = $state<SignedInUser | null>(null);

  readonly #storage: Pick<Storage, "getItem" | "setItem" | "removeItem"> | null;

  /** @param storage where the token persists; null keeps it in memory only (tests). */
  constructor(storage: Pick<Storage, "getItem" | "setItem" | "removeItem"> | null) {
    this.#storage = storage;
    this.token = storage?.getItem(TOKEN_KEY) ?? null;
  }

  signIn(payload: AuthPayload): void {
    this.#storage?.setItem(TOKEN_KEY, payload.token);
    this.token = payload.token;
    this.user = payload.user;
  }

  /** Forgets the token. The server keeps no session to end: a bearer token simply stops being sent. */
  signOut(): void {
    this.#storage?.removeItem(TOKEN_KEY);
    this.token = null;
    this.user = null;
  }

  /**
   * Follows sign-in and sign-out in other tabs (the `storage` event fires only for changes made elsewhere).
   * Returns the function that stops following.
   */
  followOtherTabs(target: Window): () => void {
    const onStorage = (event: StorageEvent) => {
      if (event.key !== TOKEN_KEY && event.key !== null) return;
      const token = this.#storage?.getItem(TOKEN_KEY) ?? null;
      if (token === this.token) return;
      this.token = token;
      this.user = null; // asked again of the server for the new token, or gone with it
    };
    target.addEventListener("storage", onStorage);
    return () => target.removeEventListener("storage", onStorage);
  }
}

export const [getSession, setSession] = createContext<Session>();

/**
 * Where to go after signing in: the `next` query parameter when it is a path on this site, "/" otherwise
 * (never an absolute or protocol-relative URL, which would make the sign-in page an open redirect).
 */
export function nextPath(url: URL): string {
  const next = url.searchParams.get("next");
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return "/";
  return next;
}

/** The sign-in URL that comes back to `url` afterwards. */
export function signInPath(url: URL): string {
  const here = url.pathname + url.search;
  return here === "/" ? "/signin" : `/signin?next=${encodeURIComponent(here)}`;
}
