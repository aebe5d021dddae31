/**
 * A target SR of a full replica copy (DR, CR) as a {@link TargetWriter}.
 */
import type { Readable } from "node:stream";

import { messageOf } from "../../errors.js";
import type { XapiRecord } from "../../xapi/pool-connection.js";
import type { ReplicaMarks } from "../../xapi/replica-operations.js";
import type { VmBackupContext } from "../backup/backup-context.js";
import { importXva } from "../restore/restore-import.js";
import type { TaskContext } from "../task-context.js";
import type { TargetWriter } from "../writers/target-set.js";
import type { ReplicaTarget } from "./replica-targets.js";

/** The name, description and marks of the replica made on a target. */
export type ReplicaNaming = (target: ReplicaTarget) => { name: string; description: string; marks: ReplicaMarks };

/**
 * One target SR: write = `PUT /import/` of the XVA (the VMs XAPI creates are marked with the run and remembered as they
 * show), commit = the imported VM made a replica, abort = what the import created destroyed (XAPI normally undid a failed
 * import already).
 */
export class ReplicaImportWriter implements TargetWriter<void, ReplicaNaming, XapiRecord> {
  private imported: string | undefined;
  private readonly created: string[] = [];

  constructor(
    private readonly ctx: VmBackupContext,
    readonly target: ReplicaTarget,
    private readonly expectedBytes: number,
  ) {}

  get name(): string {
    return this.target.name;
  }

  async prepare(): Promise<void> {
    // Nothing to open: the import creates everything.
  }

  async write(_part: void, stream: Readable, signal: AbortSignal): Promise<number> {
    const result = await importXva({
      connection: this.target.replicas.connection,
      srRef: this.target.srRef,
      body: stream,
      expectedBytes: this.expectedBytes,
      task: withoutProgress(this.ctx.task),
      signal,
      onBytes: () => undefined, // counted by the export's meter
      runId: this.ctx.runId,
      onVmCreated: (ref) => this.created.push(ref),
    });
    this.imported = result.vmRefs[0];
    for (const extra of result.vmRefs.slice(1)) await this.target.replicas.destroyVm(extra);
    return result.bytes;
  }

  async commit(naming: ReplicaNaming): Promise<XapiRecord> {
    if (!this.imported) throw new Error("nothing was imported");
    try {
      return await this.target.replicas.makeReplica(this.imported, naming(this.target));
    } catch (error) {
      throw new Error(`the imported VM could not be made a replica (${messageOf(error)})`, { cause: error });
    }
  }

  async abort(): Promise<string | undefined> {
    const { replicas } = this.target;
    const problems: string[] = [];
    if (this.imported) {
      await replicas
        .destroyVm(this.imported)
        .catch((e) =>
          problems.push(
            `the imported VM ${this.imported} on ${this.target.name} could not be removed (${messageOf(e)}): remove it by hand`,
          ),
        );
    }
    for (const vmRef of new Set(this.created)) {
      if (vmRef === this.imported) continue;
      await replicas
        .destroyVm(vmRef)
        .catch((e) =>
          problems.push(`the half-imported VM ${vmRef} on ${this.target.name} could not be removed (${messageOf(e)}): remove it by hand`),
        );
    }
    return problems.length > 0 ? problems.join("; ") : undefined;
  }
}

/** The task, with progress left to the transfer tasks (the import reports its own bytes, which the transfer task already shows). */
function withoutProgress(task: TaskContext): TaskContext {
  return Object.assign(Object.create(task) as TaskContext, { progress: () => undefined });
}
