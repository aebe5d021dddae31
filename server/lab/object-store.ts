import { EventEmitter } from "node:events";
import { defaultRecord, type XapiClass, type XapiRecord } from "./class-defaults.js";
import { XapiFailure } from "./xapi-failure.js";
import { newRef, newUuid } from "./xapi-values.js";

/** One live object: its record and the generations it was created and last modified at. */
export interface StoredObject {
  cls: XapiClass;
  ref: string;
  record: XapiRecord;
  created: number;
  modified: number;
}

/** A deleted object, kept so that `event.from` can report `del` to tokens older than the deletion. */
export interface DeletedObject {
  cls: XapiClass;
  ref: string;
  created: number;
  deleted: number;
}

/** The persisted form of a store (tasks are not persisted: XAPI forgets them on restart too). */
export interface ObjectStoreSnapshot {
  generation: number;
  objects: Array<{ cls: XapiClass; ref: string; record: XapiRecord }>;
}

const MAX_TOMBSTONES = 20_000;

/**
 * The database of a simulated pool: every object, a global generation counter bumped by every
 * mutation, and the generations each object was created/modified/deleted at (what `event.from` reads).
 *
 * Emits `change` after every mutation (the event long-polls and the persistence listen to it).
 */
export class ObjectStore extends EventEmitter {
  generation = 0;
  /** Tokens older than this cannot be answered (their tombstones were pruned): `EVENTS_LOST`. */
  oldestAnswerable = 0;
  private readonly objects = new Map<string, StoredObject>();
  private tombstones: DeletedObject[] = [];

  create(cls: XapiClass, fields: XapiRecord = {}, ref: string = newRef()): string {
    const record = defaultRecord(cls, fields);
    if ("uuid" in record && record.uuid === "") record.uuid = newUuid();
    const generation = ++this.generation;
    this.objects.set(ref, { cls, ref, record, created: generation, modified: generation });
    this.emit("change");
    return ref;
  }

  /** The object, or `HANDLE_INVALID [cls, ref]` when it does not exist or is of another class. */
  get(cls: XapiClass, ref: unknown): StoredObject {
    const object = typeof ref === "string" ? this.objects.get(ref) : undefined;
    if (object === undefined || object.cls !== cls) throw new XapiFailure("HANDLE_INVALID", [cls, String(ref)]);
    return object;
  }

  record(cls: XapiClass, ref: unknown): XapiRecord {
    return this.get(cls, ref).record;
  }

  find(ref: string): StoredObject | undefined {
    return this.objects.get(ref);
  }

  has(cls: XapiClass, ref: unknown): boolean {
    const object = typeof ref === "string" ? this.objects.get(ref) : undefined;
    return object !== undefined && object.cls === cls;
  }

  /** Mutates a record in place and bumps its generation (one `mod` event). */
  update(cls: XapiClass, ref: unknown, mutate: (record: XapiRecord) => void): XapiRecord {
    const object = this.get(cls, ref);
    mutate(object.record);
    object.modified = ++this.generation;
    this.emit("change");
    return object.record;
  }

  /** Adds or removes a value of a set field (e.g. `SR.VDIs`), when the owner still exists. */
  addToSet(cls: XapiClass, ref: string, field: string, value: string): void {
    if (!this.has(cls, ref)) return;
    this.update(cls, ref, (record) => {
      const set = record[field] as string[];
      if (!set.includes(value)) set.push(value);
    });
  }

  removeFromSet(cls: XapiClass, ref: string, field: string, value: string): void {
    if (!this.has(cls, ref)) return;
    this.update(cls, ref, (record) => {
      record[field] = (record[field] as string[]).filter((item) => item !== value);
    });
  }

  destroy(cls: XapiClass, ref: unknown): void {
    const object = this.get(cls, ref);
    this.objects.delete(object.ref);
    this.tombstones.push({ cls, ref: object.ref, created: object.created, deleted: ++this.generation });
    if (this.tombstones.length > MAX_TOMBSTONES) {
      const dropped = this.tombstones.splice(0, this.tombstones.length - MAX_TOMBSTONES);
      this.oldestAnswerable = dropped[dropped.length - 1].deleted;
    }
    this.emit("change");
  }

  all(cls: XapiClass): StoredObject[] {
    return [...this.objects.values()].filter((object) => object.cls === cls);
  }

  count(cls: XapiClass): number {
    let count = 0;
    for (const object of this.objects.values()) if (object.cls === cls) count++;
    return count;
  }

  byUuid(cls: XapiClass, uuid: unknown): StoredObject {
    for (const object of this.objects.values()) {
      if (object.cls === cls && object.record.uuid === uuid) return object;
    }
    throw new XapiFailure("UUID_INVALID", [cls, String(uuid)]);
  }

  /** Live objects modified after `generation` and objects deleted after it (created before it). */
  changesSince(generation: number): { live: StoredObject[]; deleted: DeletedObject[] } {
    const live = [...this.objects.values()].filter((object) => object.modified > generation);
    const deleted = this.tombstones.filter((tomb) => tomb.deleted > generation && tomb.created <= generation);
    return { live, deleted };
  }

  snapshot(): ObjectStoreSnapshot {
    const objects = [...this.objects.values()]
      .filter((object) => object.cls !== "task")
      .map(({ cls, ref, record }) => ({ cls, ref, record }));
    return { generation: this.generation, objects };
  }

  /** Replaces the content with a persisted snapshot; every object counts as created at the restored generation. */
  load(snapshot: ObjectStoreSnapshot): void {
    this.objects.clear();
    this.tombstones = [];
    this.generation = snapshot.generation + 1;
    for (const { cls, ref, record } of snapshot.objects) {
      this.objects.set(ref, { cls, ref, record: defaultRecord(cls, record), created: this.generation, modified: this.generation });
    }
  }
}
