/**
 * Changed block tracking of a lab pool, as SM keeps it (`sm/drivers/VDI.py`: one CBT log per VDI, a snapshot takes over
 * the log of its VDI and the VDI starts a new one; `list_changed_blocks` ORs the logs from `vdi_from` (exclusive) to
 * `vdi_to`), derived from the disk store's per-block write generations instead of kept as bitmaps:
 *
 * - every write into a block gives it the store's next generation, and a snapshot shares its blocks with their generations,
 *   so the blocks written between snapshot A and snapshot (or VDI) B are B's blocks whose generation is above the highest
 *   generation among A's blocks;
 * - a CBT chain starts when CBT is enabled (and again when it is reset: `cbt_reset` fault, disable + enable, as after a
 *   migration): `resetAt` is the object store's generation then, and only the snapshots of the VDI created after it belong to
 *   the chain;
 * - `data_destroy` keeps what `list_changed_blocks` needs of a snapshot (its block generations), as SM keeps the log.
 *
 * The granularity is therefore the lab's 2 MiB block: a changed block sets its 32 bits of 64 KiB (CBT may over-report; a
 * real log marks each 64 KiB written). Persisted in `cbt.json` beside `state.json`.
 */
import { join } from "node:path";
import { JsonStateFile } from "./json-state-file.js";
import type { LabPool } from "./pool-state.js";

/** What `data_destroy` keeps of a snapshot: its block generations (index, generation). */
export interface FrozenCbtLog {
  maxGeneration: number;
  blocks: Array<[index: number, generation: number]>;
}

interface PersistedCbt {
  /** Per live VDI uuid with CBT on: the object store generation its current chain started at. */
  chains: Record<string, number>;
  /** Per cbt_metadata snapshot uuid: its frozen log. */
  frozen: Record<string, FrozenCbtLog>;
}

export class CbtState {
  private chains = new Map<string, number>();
  private frozen = new Map<string, FrozenCbtLog>();
  private readonly file: JsonStateFile<PersistedCbt>;

  constructor(dir: string) {
    this.file = new JsonStateFile(join(dir, "cbt.json"), () => ({
      chains: Object.fromEntries(this.chains),
      frozen: Object.fromEntries(this.frozen),
    }));
  }

  async load(): Promise<void> {
    const saved = await this.file.read();
    if (saved === undefined) return;
    this.chains = new Map(Object.entries(saved.chains));
    this.frozen = new Map(Object.entries(saved.frozen));
  }

  chainStart(vdiUuid: string): number | undefined {
    return this.chains.get(vdiUuid);
  }

  startChain(vdiUuid: string, generation: number): void {
    this.chains.set(vdiUuid, generation);
    this.file.schedule();
  }

  endChain(vdiUuid: string): void {
    if (this.chains.delete(vdiUuid)) this.file.schedule();
  }

  /** Every live VDI with a chain (for the `cbt_reset` fault). */
  chainedVdis(): string[] {
    return [...this.chains.keys()];
  }

  frozenLog(vdiUuid: string): FrozenCbtLog | undefined {
    return this.frozen.get(vdiUuid);
  }

  freeze(vdiUuid: string, log: FrozenCbtLog): void {
    this.frozen.set(vdiUuid, log);
    this.file.schedule();
  }

  forget(vdiUuid: string): void {
    const had = this.chains.delete(vdiUuid) || this.frozen.delete(vdiUuid);
    if (had) this.file.schedule();
  }

  flush(): Promise<void> {
    return this.file.flush();
  }
}

const states = new WeakMap<LabPool, Promise<CbtState>>();

/** The pool's CBT state, loaded on first use. */
export function cbtStateOf(pool: LabPool): Promise<CbtState> {
  let state = states.get(pool);
  if (state === undefined) {
    const created = new CbtState(pool.options.dir);
    state = created.load().then(() => created);
    states.set(pool, state);
  }
  return state;
}

/** Saves the pool's CBT state if it was used (the lab's stop). */
export async function flushCbtState(pool: LabPool): Promise<void> {
  const state = states.get(pool);
  if (state !== undefined) await (await state).flush();
}

/** The `cbt_reset` fault: every chain restarts now, as after a VDI migration or CBT disabled and enabled again. */
export async function resetCbtChains(pool: LabPool): Promise<void> {
  const state = await cbtStateOf(pool);
  for (const uuid of state.chainedVdis()) state.startChain(uuid, pool.store.generation + 1);
}
