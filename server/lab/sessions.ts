import { timingSafeEqual } from "node:crypto";
import { XapiFailure } from "./xapi-failure.js";
import { newRef } from "./xapi-values.js";

/** Sessions of one pool, in memory (like XAPI's, they do not survive a restart: clients log in again). */
export class Sessions {
  private readonly sessions = new Map<string, { user: string; created: number }>();
  private readonly logoutListeners = new Set<(session: string) => void>();

  constructor(
    private readonly user: string,
    private readonly password: string,
  ) {}

  /** `session.login_with_password`: `SESSION_AUTHENTICATION_FAILED [user, msg]` on bad credentials. */
  login(user: unknown, password: unknown): string {
    if (!sameText(user, this.user) || !sameText(password, this.password)) {
      throw new XapiFailure("SESSION_AUTHENTICATION_FAILED", [String(user), "Authentication failure"]);
    }
    const ref = newRef();
    this.sessions.set(ref, { user: this.user, created: Date.now() });
    return ref;
  }

  checkCredentials(user: string, password: string): boolean {
    return sameText(user, this.user) && sameText(password, this.password);
  }

  /** Throws `SESSION_INVALID [ref]` unless `ref` is a live session. */
  check(ref: unknown): string {
    if (typeof ref !== "string" || !this.sessions.has(ref)) throw new XapiFailure("SESSION_INVALID", [String(ref)]);
    return ref;
  }

  isValid(ref: unknown): boolean {
    return typeof ref === "string" && this.sessions.has(ref);
  }

  logout(ref: string): void {
    this.sessions.delete(ref);
    for (const listener of this.logoutListeners) listener(ref);
  }

  /** Drops every session (the `SESSION_INVALID` fault and lab restarts). */
  invalidateAll(): void {
    for (const ref of [...this.sessions.keys()]) this.logout(ref);
  }

  onLogout(listener: (session: string) => void): () => void {
    this.logoutListeners.add(listener);
    return () => this.logoutListeners.delete(listener);
  }
}

function sameText(given: unknown, expected: string): boolean {
  if (typeof given !== "string") return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
