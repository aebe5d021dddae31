/**
 * The open graphql-ws connections and the credential each was opened with. A credential can die while its socket stays open
 * (revoked, signed out, expired, its user disabled or deleted, in this process or another on the same database): the guard
 * re-checks every connection at once when this process changes a credential, and every few seconds for the rest, and closes
 * the dead ones with 4401, or 4403 when the credential lives on but no longer allows a subscription the connection holds.
 */
import { CairnError, ErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import { ROLE_RANK, type Principal } from "../domain/principal.js";

/** graphql-ws's CloseCode.Unauthorized: the credential is not (or no longer) valid; graphql-ws clients do not retry it. */
export const CLOSE_UNAUTHENTICATED = 4401;
/** graphql-ws's CloseCode.Forbidden: the credential is valid but no longer allows what the connection does. */
export const CLOSE_FORBIDDEN = 4403;
/** WebSocket "Try Again Later": the credential could not be checked (the database is away); clients may retry. */
export const CLOSE_TRY_AGAIN_LATER = 1013;

export interface GuardedConnection {
  /** The `authorization` of connection_init, checked again at each sweep. */
  readonly authorization: string;
  /** The principal as last checked; the guard updates it when the role changed. */
  principal: Principal;
  close(code: number, reason: string): void;
  /**
   * Whether the connection's live subscriptions are still allowed to `principal` (called when its role went down). The
   * connection updates what its subscriptions see when they are.
   */
  stillAllowed(principal: Principal): Promise<boolean>;
}

export interface SocketGuardOptions {
  authenticate(authorization: string): Promise<Principal | undefined>;
  log: Logger;
  /** Period of the sweep that catches expiries and changes made by other processes. @default 5000 */
  intervalMs?: number;
  /** A burst of credential changes (a user disabled revokes many tokens) makes one sweep. @default 50 */
  debounceMs?: number;
  /** Distinct credentials checked at once in a sweep. @default 4 */
  concurrency?: number;
}

export const DEFAULT_SOCKET_CHECK_INTERVAL_MS = 5_000;

export class SocketGuard {
  private readonly connections = new Set<GuardedConnection>();
  private readonly interval: NodeJS.Timeout;
  private debounce: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(private readonly options: SocketGuardOptions) {
    this.interval = setInterval(() => void this.checkNow(), options.intervalMs ?? DEFAULT_SOCKET_CHECK_INTERVAL_MS);
    this.interval.unref();
  }

  get size(): number {
    return this.connections.size;
  }

  add(connection: GuardedConnection): void {
    if (!this.stopped) this.connections.add(connection);
  }

  remove(connection: GuardedConnection): void {
    this.connections.delete(connection);
  }

  /** Something killed or narrowed a credential: sweep soon (once for a burst). */
  credentialsChanged(): void {
    if (this.stopped || this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      void this.checkNow();
    }, this.options.debounceMs ?? 50);
    this.debounce.unref();
  }

  /** Checks every connection now; a call during a sweep makes one more sweep after it (the change may have come late). */
  checkNow(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.sweeping) {
      this.again = true;
      return this.sweeping;
    }
    this.sweeping = (async () => {
      try {
        do {
          this.again = false;
          await this.sweep();
        } while (this.again && !this.stopped);
      } finally {
        this.sweeping = undefined;
      }
    })();
    return this.sweeping;
  }

  /** Stops the sweeps and waits for the one under way (it reads the database, which closes after us). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.interval);
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = undefined;
    await this.sweeping;
    this.connections.clear();
  }

  /** One authentication per distinct credential (a user's tabs share theirs), a few at a time. */
  private async sweep(): Promise<void> {
    const byCredential = new Map<string, GuardedConnection[]>();
    for (const connection of this.connections) {
      const group = byCredential.get(connection.authorization);
      if (group) group.push(connection);
      else byCredential.set(connection.authorization, [connection]);
    }
    const groups = [...byCredential];
    const workers = Array.from({ length: Math.min(this.options.concurrency ?? 4, groups.length) }, async () => {
      for (let group = groups.shift(); group && !this.stopped; group = groups.shift()) {
        await this.checkCredential(group[0], group[1]);
      }
    });
    await Promise.all(workers);
  }

  private async checkCredential(authorization: string, connections: GuardedConnection[]): Promise<void> {
    let principal: Principal | undefined;
    try {
      principal = await this.options.authenticate(authorization);
    } catch (error) {
      if (error instanceof CairnError && error.code === ErrorCode.Unauthenticated) {
        for (const connection of connections) this.closeDead(connection, error.message);
        return;
      }
      // The database is away: keep the connections (their operations are re-checked one by one); the next sweep retries.
      this.options.log.warn({ err: error, connections: connections.length }, "could not re-check the credentials of open sockets");
      return;
    }
    for (const connection of connections) {
      if (!this.connections.has(connection)) continue;
      if (!principal) {
        this.closeDead(connection, "Sign in again.");
        continue;
      }
      const before = connection.principal;
      if (ROLE_RANK[principal.role] < ROLE_RANK[before.role]) {
        const allowed = await connection.stillAllowed(principal).catch((error: unknown) => {
          this.options.log.warn({ err: error }, "could not re-check the subscriptions of a socket whose role went down");
          return false;
        });
        if (!allowed) {
          this.close(connection, CLOSE_FORBIDDEN, `Forbidden: your role is now ${principal.role}; subscribe again.`);
          continue;
        }
      }
      connection.principal = principal;
    }
  }

  private closeDead(connection: GuardedConnection, why: string): void {
    this.close(connection, CLOSE_UNAUTHENTICATED, `Unauthenticated: ${why}`);
  }

  private close(connection: GuardedConnection, code: number, reason: string): void {
    if (!this.connections.delete(connection)) return;
    this.options.log.info({ code, userId: connection.principal.userId, tokenId: connection.principal.tokenId }, "closed a socket");
    connection.close(code, closeReason(reason));
  }
}

/** A WebSocket close reason is at most 123 bytes of UTF-8. */
export function closeReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  const characters = Array.from(reason.slice(0, 120));
  while (Buffer.byteLength(`${characters.join("")}…`) > 123) characters.pop();
  return `${characters.join("")}…`;
}
