/**
 * The live connections of this process, one per pool, kept in step with the Pool table: statuses are written back so that
 * every process and the reporting queries see them, and the VM inventory is refreshed as the pool's objects change.
 */
import type { Db } from "../db/prisma.js";
import type { Logger } from "../log.js";
import type { SecretBox } from "../security/secret-box.js";
import { PoolConnection, type PoolCredentials, type PoolStatus } from "./pool-connection.js";
import { listVms } from "./inventory.js";

const INVENTORY_DEBOUNCE_MS = 2_000;

/** How many changes of a pool's connection state are kept (in memory, per process: a restart starts them afresh). */
export const CONNECTION_HISTORY_LENGTH = 50;

/** One change of the state of Cairn's connection to a pool, as this process saw it. */
export interface ConnectionChange {
  at: Date;
  status: PoolStatus;
  /** Why, in the words of the connection (the error when it failed); undefined when nothing needs saying. */
  reason: string | undefined;
}

export class PoolRegistry {
  private readonly connections = new Map<string, PoolConnection>();
  /**
   * Per pool, its connection's state changes, oldest first. Kept here rather than in the connection: a reconnect with new
   * settings replaces the connection, and the pool's history goes on.
   */
  private readonly histories = new Map<string, ConnectionChange[]>();

  constructor(
    private readonly db: Db,
    private readonly secrets: SecretBox,
    private readonly log: Logger,
  ) {}

  /**
   * Connects every known pool in the background (each retries on its own), waiting up to `waitMs` for the first attempts so
   * that what starts next (crash recovery, the run worker) sees the pools that are reachable.
   */
  async start(waitMs = 10_000): Promise<void> {
    const attempts = (await this.db.pool.findMany()).map((pool) => this.attach(pool.id, this.credentialsOf(pool)).start());
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(attempts), new Promise((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
  }

  /**
   * What will not work on a pool (its master's XAPI is older than everything Cairn calls needs), or undefined; live, for
   * the pools this process holds.
   */
  warningOf(poolId: string): string | undefined {
    return this.connections.get(poolId)?.warning;
  }

  /** The fingerprint of the certificate a pool presents while it is refused (live, this process's pools). */
  presentedFingerprintOf(poolId: string): string | undefined {
    return this.connections.get(poolId)?.presentedFingerprint;
  }

  /** The state changes of a pool's connection this process saw, newest first (empty for a pool it does not hold). */
  historyOf(poolId: string): ConnectionChange[] {
    return [...(this.histories.get(poolId) ?? [])].reverse();
  }

  get(poolId: string): PoolConnection | undefined {
    return this.connections.get(poolId);
  }

  all(): PoolConnection[] {
    return [...this.connections.values()];
  }

  /** Connects once in the foreground (to report a bad URL or password at once), then keeps the connection. */
  async connectNow(poolId: string, credentials: PoolCredentials): Promise<PoolConnection> {
    const connection = new PoolConnection(poolId, credentials, this.log);
    await connection.connectOnce();
    const reconnecting = this.connections.has(poolId);
    await this.detach(poolId);
    this.wire(connection, reconnecting ? "reconnected on an administrator's request" : undefined);
    await this.persistStatus(connection);
    await this.syncInventory(connection);
    return connection;
  }

  /** Closes a pool's connection; `forget`: the pool is gone, its history goes with it. */
  async detach(poolId: string, { forget = false } = {}): Promise<void> {
    const existing = this.connections.get(poolId);
    this.connections.delete(poolId);
    if (forget) this.histories.delete(poolId);
    await existing?.close();
  }

  async stop(): Promise<void> {
    await Promise.all(this.all().map((c) => this.detach(c.poolId)));
  }

  credentialsOf(pool: {
    name?: string;
    url: string;
    username: string;
    passwordSealed: string;
    allowUnauthorized: boolean;
    tlsFingerprint?: string | null;
  }): PoolCredentials {
    return {
      name: pool.name,
      url: pool.url,
      username: pool.username,
      password: this.secrets.open(pool.passwordSealed),
      allowUnauthorized: pool.allowUnauthorized,
      tlsFingerprint: pool.tlsFingerprint ?? null,
    };
  }

  private attach(poolId: string, credentials: PoolCredentials): PoolConnection {
    const connection = new PoolConnection(poolId, credentials, this.log);
    this.wire(connection);
    return connection;
  }

  private wire(connection: PoolConnection, reason?: string): void {
    this.connections.set(connection.poolId, connection);
    // A connection made in the foreground announced its first state before anyone listened.
    this.recordChange(connection, reason);
    connection.on("status", () => {
      this.recordChange(connection);
      void this.persistStatus(connection);
      if (connection.status === "CONNECTED") void this.syncInventory(connection);
    });
    let timer: NodeJS.Timeout | undefined;
    connection.on("objects", () => {
      clearTimeout(timer);
      timer = setTimeout(() => void this.syncInventory(connection), INVENTORY_DEBOUNCE_MS);
      timer.unref();
    });
  }

  /**
   * Records the connection's state when it differs from the last one recorded (or when `reason` says why it is recorded
   * anyway): a pool that stays in ERROR while retrying every minute adds no line per attempt.
   */
  private recordChange(connection: PoolConnection, reason?: string): void {
    if (this.connections.get(connection.poolId) !== connection) return;
    const history = this.histories.get(connection.poolId) ?? [];
    const last = history.at(-1);
    if (last?.status === connection.status && reason === undefined) return;
    history.push({ at: new Date(), status: connection.status, reason: reason ?? connection.lastError });
    if (history.length > CONNECTION_HISTORY_LENGTH) history.splice(0, history.length - CONNECTION_HISTORY_LENGTH);
    this.histories.set(connection.poolId, history);
  }

  private async persistStatus(connection: PoolConnection): Promise<void> {
    if (this.connections.get(connection.poolId) !== connection) return;
    await this.db.pool
      .update({
        where: { id: connection.poolId },
        data: {
          status: connection.status,
          lastError: connection.lastError ?? null,
          ...(connection.status === "CONNECTED" ? { connectedAt: new Date() } : {}),
        },
      })
      .catch((error) => this.log.debug({ err: error, poolId: connection.poolId }, "pool status not saved (pool removed?)"));
  }

  private async syncInventory(connection: PoolConnection): Promise<void> {
    if (this.connections.get(connection.poolId) !== connection) return;
    const vms = listVms(connection);
    try {
      await this.db.$transaction(
        vms.map((vm) =>
          this.db.vmInventory.upsert({
            where: { uuid: vm.uuid },
            create: { uuid: vm.uuid, poolId: connection.poolId, name: vm.name, tags: vm.tags, powerState: vm.powerState },
            update: { poolId: connection.poolId, name: vm.name, tags: vm.tags, powerState: vm.powerState, lastSeenAt: new Date() },
          }),
        ),
      );
    } catch (error) {
      this.log.warn({ err: error, poolId: connection.poolId }, "VM inventory not refreshed");
    }
  }
}
