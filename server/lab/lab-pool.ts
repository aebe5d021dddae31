import { EventEmitter } from "node:events";
import { join } from "node:path";
import { registerCoreMethods } from "./core-methods.js";
import { DiskStore } from "./disk-store.js";
import { EventHub } from "./event-hub.js";
import { Faults } from "./faults.js";
import { registerGenericMethods } from "./generic-methods.js";
import { JsonStateFile } from "./json-state-file.js";
import { registerLabMethods } from "./lab-methods.js";
import { ObjectStore, type ObjectStoreSnapshot } from "./object-store.js";
import type { MethodTable } from "./rpc-method.js";
import { seedPool, type SeedOptions } from "./seed-pool.js";
import { Sessions } from "./sessions.js";
import { registerStorageMethods } from "./storage-methods.js";
import { Tasks } from "./tasks.js";
import { registerVmMethods } from "./vm-methods.js";

export interface LabPoolOptions {
  /** Folder of this pool's state (`state.json`) and disks (`disks.json`, `blocks/`). */
  dir: string;
  user: string;
  password: string;
  poolName: string;
  /** The address clients reach the host at (`host.address`). */
  hostAddress: string;
  seed: string;
  diskSizeBytes: number;
  log: (message: string) => void;
}

/**
 * One simulated pool: its object database, disks, sessions, tasks, events, faults and method table.
 * Transport-free: the HTTP server calls `methods` and the handlers use the rest.
 *
 * Emits `unreachable` when the `host_unreachable` fault is set (the server then drops its connections), and
 * `reachable` when that period is over.
 */
export class LabPool extends EventEmitter {
  readonly store = new ObjectStore();
  readonly disks: DiskStore;
  readonly sessions: Sessions;
  readonly faults = new Faults();
  readonly tasks: Tasks;
  readonly events: EventHub;
  readonly methods: MethodTable = new Map();
  private readonly stateFile: JsonStateFile<ObjectStoreSnapshot>;

  private constructor(readonly options: LabPoolOptions) {
    super();
    this.disks = new DiskStore(join(options.dir, "disks"));
    this.sessions = new Sessions(options.user, options.password);
    this.tasks = new Tasks(this.store, () => this.hostRef);
    this.events = new EventHub(this.store, this.sessions, this.faults);
    this.stateFile = new JsonStateFile(join(options.dir, "state.json"), () => this.store.snapshot());
    registerGenericMethods(this.methods);
    registerCoreMethods(this.methods);
    registerVmMethods(this.methods);
    registerStorageMethods(this.methods);
    registerLabMethods(this.methods);
  }

  /** Opens the pool in `dir`: the saved state when there is one, otherwise a freshly seeded pool. */
  static async open(options: LabPoolOptions): Promise<LabPool> {
    const pool = new LabPool(options);
    await pool.disks.open();
    const saved = await pool.stateFile.read();
    if (saved !== undefined) {
      pool.store.load(saved);
      pool.forgetRunningOperations();
    } else {
      const seed: SeedOptions = { name: options.poolName, hostAddress: options.hostAddress, seed: options.seed, diskSizeBytes: options.diskSizeBytes };
      await seedPool(pool, seed, options.log);
    }
    pool.updateHostAddress(options.hostAddress);
    pool.store.on("change", () => pool.stateFile.schedule());
    pool.stateFile.schedule();
    return pool;
  }

  get poolRef(): string {
    return this.store.all("pool")[0].ref;
  }

  get hostRef(): string {
    return this.store.all("host")[0]?.ref ?? "OpaqueRef:NULL";
  }

  get defaultSr(): string {
    return this.store.record("pool", this.poolRef).default_SR as string;
  }

  updateHostAddress(address: string): void {
    const host = this.hostRef;
    if (this.store.has("host", host) && this.store.record("host", host).address !== address) {
      this.store.update("host", host, (record) => void (record.address = address));
    }
  }

  /** Saves everything and answers waiting event.from calls. */
  async close(): Promise<void> {
    this.events.close();
    await this.disks.close();
    await this.stateFile.flush();
  }

  // Operations in flight when the lab stopped never finish: clear them as XAPI does after a restart.
  private forgetRunningOperations(): void {
    for (const cls of ["VM", "VDI", "SR"] as const) {
      for (const object of this.store.all(cls)) {
        if (Object.keys(object.record.current_operations as object).length > 0) {
          this.store.update(cls, object.ref, (record) => void (record.current_operations = {}));
        }
      }
    }
  }
}
