import { EventEmitter } from "node:events";
import { join } from "node:path";
import { DiskStore } from "./disk-store.js";
import { EventHub } from "./event-hub.js";
import { Faults } from "./faults.js";
import { JsonStateFile } from "./json-state-file.js";
import { ObjectStore, type ObjectStoreSnapshot } from "./object-store.js";
import { Sessions } from "./sessions.js";
import { Tasks } from "./tasks.js";

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
 * One simulated pool's state: its object database, disks, sessions, tasks, events and faults. What the method bodies,
 * the operations and the HTTP handlers work on; it knows none of them (lab-pool.ts composes the pool: it opens or seeds
 * the state and builds the method table), so every import among the lab's files points one way.
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
  private readonly stateFile: JsonStateFile<ObjectStoreSnapshot>;

  constructor(readonly options: LabPoolOptions) {
    super();
    this.disks = new DiskStore(join(options.dir, "disks"));
    this.sessions = new Sessions(options.user, options.password);
    this.tasks = new Tasks(this.store, () => this.hostRef);
    this.events = new EventHub(this.store, this.sessions, this.faults);
    this.stateFile = new JsonStateFile(join(options.dir, "state.json"), () => this.store.snapshot());
  }

  /** Opens the disks and loads the saved state; false when there is none (a fresh pool, to be seeded). */
  async load(): Promise<boolean> {
    await this.disks.open();
    const saved = await this.stateFile.read();
    if (saved === undefined) return false;
    this.store.load(saved);
    this.forgetRunningOperations();
    return true;
  }

  /** From now on every change is saved (and saves once now). */
  saveChanges(): void {
    this.store.on("change", () => this.stateFile.schedule());
    this.stateFile.schedule();
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

  /**
   * Replaces the pool's database with a restored one, as XAPI does when it restarts on a database received by
   * `PUT /pool/xmldbdump` (pool_db_backup.ml `prepare_database_for_restore`): the master keeps its own identity (its
   * uuid), the other hosts of the dump are dropped with their PIFs, every session ends (XAPI restarts) and event tokens from
   * before are answered EVENTS_LOST; tasks are kept. Disks are not part of a dump: a restored VDI whose data is gone stays without data.
   */
  restoreDatabase(restored: ObjectStoreSnapshot): void {
    const currentMasterUuid = this.store.has("host", this.hostRef) ? this.store.record("host", this.hostRef).uuid : undefined;
    const pool = restored.objects.find((object) => object.cls === "pool");
    const master = pool?.record.master;
    const dropped = new Set(
      restored.objects.filter((object) => object.cls === "host" && object.ref !== master).map((object) => object.ref),
    );
    const objects = restored.objects
      .filter((object) => !dropped.has(object.ref) && !(object.cls === "PIF" && dropped.has(String(object.record.host))))
      .map((object) =>
        object.cls === "host" && object.ref === master && currentMasterUuid !== undefined
          ? { ...object, record: { ...object.record, uuid: currentMasterUuid } }
          : object,
      );
    // XAPI restarts after a fuse, time for clients to read the restore's task; the lab restarts at once and keeps the
    // tasks instead, so that a client reads the same outcome without racing a timer.
    const tasks = this.store.all("task").map(({ cls, ref, record }) => ({ cls, ref, record }));
    const before = this.store.generation;
    this.store.load({ generation: Math.max(before, restored.generation), objects: [...objects, ...tasks] });
    this.store.oldestAnswerable = this.store.generation;
    this.forgetRunningOperations();
    this.sessions.invalidateAll();
    this.store.emit("change");
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
