/**
 * The one way a backup or a replication writes to several targets at once (remotes, SRs).
 *
 * A {@link TargetWriter} is one target's side: `prepare` it, `write` each part (an XVA, a disk) from its own fork of the
 * source, `commit` it, or `abort` it (undo what it wrote; nothing after a commit). A {@link TargetSet} drives them together:
 * it prepares all, streams each part to every live target at once (one fork each, under a `transfer` task per target), commits
 * each, and drops a target that fails at any step with a warning on the VM's task ("<target> dropped: <reason>") while the
 * others go on. It fails only when every target failed, with one error ("every target failed (<target>: <reason>; ...)"),
 * and {@link TargetSet.abortUncommitted} (always, in a `finally`) aborts every writer that was not committed.
 *
 * When the run is stopped (cancel, timeout, shutdown), transfer tasks are left to the run machinery, which ends them with the
 * run's own status and message, and a target that failed because of the stop is not warned about.
 */
import type { Readable } from "node:stream";

import { messageOf } from "../../errors.js";
import { byteMeter } from "../../streams/byte-meter.js";
import { forkStream } from "../../streams/fork-stream.js";
import { chainStreams } from "../../streams/stream-chain.js";
import type { TaskContext } from "../task-context.js";

export interface TargetWriter<Part = void, CommitInput = void, Committed = void> {
  /** For tasks and warnings. */
  readonly name: string;
  /** Opens the target (a backup folder locked, a mark set): before any write. */
  prepare(signal: AbortSignal): Promise<void>;
  /** Writes one part from its own fork of the source; resolves with the bytes written. */
  write(part: Part, stream: Readable, signal: AbortSignal): Promise<number>;
  /** Makes what was written complete and visible. */
  commit(input: CommitInput): Promise<Committed>;
  /** Undoes what was written. Called once, and never after a successful commit; answers a warning when it could not. */
  abort(): Promise<string | undefined>;
}

// biome-ignore lint/suspicious/noExplicitAny: a writer of any target kind, which `unknown` cannot express (its methods take parts contravariantly)
type AnyWriter = TargetWriter<any, any, any>;
type PartOf<W> = W extends TargetWriter<infer P, infer _I, infer _C> ? P : never;
type InputOf<W> = W extends TargetWriter<infer _P, infer I, infer _C> ? I : never;
type CommittedOf<W> = W extends TargetWriter<infer _P, infer _I, infer C> ? C : never;

interface TargetState {
  live: boolean;
  committed: boolean;
  aborted: boolean;
  error?: unknown;
}

export class TargetSet<W extends AnyWriter> {
  private readonly states = new Map<W, TargetState>();

  constructor(
    readonly writers: readonly W[],
    private readonly options: { task: TaskContext; signal: AbortSignal },
  ) {
    for (const writer of writers) this.states.set(writer, { live: true, committed: false, aborted: false });
  }

  /** The targets still in the game, in the order given. */
  get live(): W[] {
    return this.writers.filter((w) => this.states.get(w)!.live);
  }

  /** Prepares every target at once; drops those that fail. @throws {@link failure} when none is left. */
  async prepare(): Promise<void> {
    await Promise.all(
      this.live.map(async (writer) => {
        try {
          await writer.prepare(this.options.signal);
        } catch (error) {
          await this.drop(writer, error);
        }
      }),
    );
    this.assertLive();
  }

  /**
   * Streams `source` to every live target at once, one fork each, under a `transfer` task "<what> to <target>". A target
   * whose write fails is dropped and its fork cut; the others go on. Never throws for a target: the caller reads
   * {@link live} (and, when none is left, throws {@link failure}).
   */
  /**
   * @param options.expectedBytes what the source will carry, for the transfer tasks' progress: a number, or a function read
   * at each progress step when the size becomes known only from the stream's head (a VHD's BAT)
   */
  async transfer(source: Readable, part: PartOf<W>, options: { what: string; expectedBytes: number | (() => number) }): Promise<void> {
    const { task: vmTask, signal } = this.options;
    const live = this.live;
    const forks = forkStream(source, live.length);
    // A source failing while a target's task is being created (before its pipeline below listens) must not be an
    // uncaught 'error' event: the pipeline still sees the destroyed fork.
    for (const fork of forks) fork.stream.on("error", () => undefined);
    await Promise.all(
      live.map(async (writer, i) => {
        const fork = forks[i];
        const task = await vmTask.child("transfer", `${options.what} to ${writer.name}`);
        const meter = byteMeter((written) => {
          const expected = typeof options.expectedBytes === "function" ? options.expectedBytes() : options.expectedBytes;
          task.progress(expected > 0 ? Math.min(0.99, written / expected) : 0, written);
        }, 0);
        // pipeline (not pipe) so that a cut fork or a failed source errors the writer's stream instead of leaving it waiting.
        chainStreams(fork.stream, meter);
        try {
          const bytes = await writer.write(part, meter, signal);
          await task.succeed({ bytes }, bytes);
        } catch (error) {
          fork.cut(error);
          // Out of the game at once (before any await): whoever watches the source learns that this target, not the
          // source, failed first.
          const dropped = this.markDropped(writer, error);
          // A stopped run is no failure of this transfer: the task is left open and the run machinery ends it with the
          // run's own status and message (CANCELLED "Cancelled by a user.", ...).
          if (signal.aborted) return;
          await task.fail(error);
          if (dropped) await this.warnDropped(writer, error);
        }
      }),
    );
  }

  /**
   * Commits every live target with `input`, then runs `then` for it (record the restore point, retention...). A target
   * whose commit or `then` fails is dropped; a commit that succeeded is never aborted. @returns the targets that made it.
   */
  async commit(input: InputOf<W>, then?: (writer: W, committed: CommittedOf<W>) => Promise<void>): Promise<W[]> {
    const done: W[] = [];
    for (const writer of this.live) {
      const state = this.states.get(writer)!;
      try {
        const committed = (await writer.commit(input)) as CommittedOf<W>;
        state.committed = true;
        await then?.(writer, committed);
        done.push(writer);
      } catch (error) {
        await this.drop(writer, error);
      }
    }
    return done;
  }

  /** Drops a target: it takes no further part; the VM gets "<target> dropped: <reason>" (not when the run was stopped). */
  async drop(writer: W, error: unknown): Promise<void> {
    if (this.markDropped(writer, error)) await this.warnDropped(writer, error);
  }

  /** Drops every live target for one error (a source that failed them all). */
  async dropAll(error: unknown): Promise<void> {
    for (const writer of this.live) await this.drop(writer, error);
  }

  /** @returns whether the target was live until now. */
  private markDropped(writer: W, error: unknown): boolean {
    const state = this.states.get(writer)!;
    if (!state.live) return false;
    state.live = false;
    state.error = error;
    return true;
  }

  private async warnDropped(writer: W, error: unknown): Promise<void> {
    if (!this.options.signal.aborted) await this.options.task.warn(`${writer.name} dropped: ${messageOf(error)}`);
  }

  /** The one error of a set where every target failed, naming each with its reason. */
  failure(): Error {
    const reasons = this.writers.map((w) => {
      const error = this.states.get(w)!.error;
      return `${w.name}: ${error === undefined ? "failed" : messageOf(error)}`;
    });
    return new Error(`every target failed (${reasons.join("; ")})`);
  }

  /** @throws {@link failure} when no target is left. */
  assertLive(): void {
    if (this.live.length === 0) throw this.failure();
  }

  /** Aborts every writer not committed (each once), warning on the VM about what could not be undone. */
  async abortUncommitted(): Promise<void> {
    for (const writer of this.writers) {
      const state = this.states.get(writer)!;
      if (state.committed || state.aborted) continue;
      state.aborted = true;
      let warning: string | undefined;
      try {
        warning = await writer.abort();
      } catch (error) {
        warning = `${writer.name}: what was written could not be removed (${messageOf(error)})`;
      }
      if (warning) await this.options.task.warn(warning);
    }
  }
}
