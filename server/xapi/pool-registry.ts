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

/** How many changes of a pool's connection state are kept per pool (in the database, across restarts). */
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
   * Per pool, the last state change this process recorded (to add no line per failed retry). Kept here rather than in the
   * connection: a reconnect with new settings replaces the connection, and the pool's history goes on.
   */
  private readonly lastChanges = new Map<string, ConnectionChange>();
  /** Per pool, the history writes in flight, chained so that changes are stored in the order they happened. */
  private readonly historyWrites = new Map<string, Promise<void>>();

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

  /**
   * The state changes of a pool's connection, newest first, as the Cairn processes holding it recorded them (stored, so a
   * restart keeps them; the newest {@link CONNECTION_HISTORY_LENGTH}).
   */
  async historyOf(poolId: string): Promise<ConnectionChange[]> {
    await this.historyWrites.get(poolId);
    const rows = await this.db.poolConnectionChange.findMany({
      where: { poolId },
      orderBy: [{ at: "desc" }, { id: "desc" }],
      take: CONNECTION_HISTORY_LENGTH,
    });
    return rows.map((row) => ({ at: row.at, status: row.status as PoolStatus, reason: row.reason ?? undefined }));
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
    // The stored history goes with the pool's row (ON DELETE CASCADE).
    if (forget) this.lastChanges.delete(poolId);
    await existing?.close();
  }

  async stop(): Promise<void> {
    await Promise.all(this.all().map((c) => this.detach(c.poolId)));
    // What the closes recorded is stored before the database closes.
    await Promise.all(this.historyWrites.values());
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
    const poolId = connection.poolId;
    const last = this.lastChanges.get(poolId);
    if (last?.status === connection.status && reason === undefined) return;
    const change: ConnectionChange = { at: new Date(), status: connection.status, reason: reason ?? connection.lastError };
    this.lastChanges.set(poolId, change);
    const previous = this.historyWrites.get(poolId) ?? Promise.resolve();
    const write = previous.then(() => this.storeChange(poolId, change));
    this.historyWrites.set(poolId, write);
    void write.finally(() => {
      if (this.historyWrites.get(poolId) === write) this.historyWrites.delete(poolId);
    });
  }

  /** Stores one change and drops the pool's changes older than the newest {@link CONNECTION_HISTORY_LENGTH}. */
  private async storeChange(poolId: string, change: ConnectionChange): Promise<void> {
    try {
      await this.db.poolConnectionChange.create({
        data: { poolId, at: change.at, status: change.status, reason: change.reason ?? null },
      });
      const beyond = await this.db.poolConnectionChange.findMany({
        where: { poolId },
        orderBy: [{ at: "desc" }, { id: "desc" }],
        skip: CONNECTION_HISTORY_LENGTH,
        select: { id: true },
      });
      if (beyond.length > 0) await this.db.poolConnectionChange.deleteMany({ where: { id: { in: beyond.map((row) => row.id) } } });
    } catch (error) {
      // A pool removed meanwhile (its rows are gone with it) or a database outage: the history misses a line, nothing else.
      this.log.debug({ err: error, poolId }, "pool connection change not stored");
    }
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
