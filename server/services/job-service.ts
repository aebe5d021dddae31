/** Jobs and their schedules: create, update, remove, read. Every reference (remote, SR, VM, pool) must exist. */
import type { Db } from "../db/prisma.js";
import { CairnError, ErrorCode, InputError, notFound } from "../errors.js";
import { validUuid } from "../domain/ids.js";
import { effectiveSettings } from "../domain/job-settings.js";
import { checkJobInput, type CheckedJob, type JobInput } from "./job-input.js";
import type { ConfigurationCache } from "./configuration-cache.js";
import type { PoolService } from "./pool-service.js";

export const JOB_INCLUDE = { remotes: true, schedules: { orderBy: { createdAt: "asc" } } } as const;

export interface JobServiceOptions {
  /** REPORT_WEBHOOK_ALLOW_PRIVATE. @default false */
  allowPrivateWebhooks?: boolean;
  /** Where the jobs list is kept between changes; none: every call reads the database. */
  cache?: ConfigurationCache;
}

export class JobService {
  constructor(
    private readonly db: Db,
    private readonly pools: PoolService,
    private readonly options: JobServiceOptions = {},
  ) {}

  /** Every job with its remotes and schedules, by name, as of `asOf` (see ConfigurationCache.read). Frozen: do not change it. */
  list(asOf?: number) {
    const load = () => this.db.job.findMany({ orderBy: { name: "asc" }, include: JOB_INCLUDE });
    return this.options.cache ? this.options.cache.read("jobs", load, asOf) : load();
  }

  async get(id: string) {
    const job = await this.db.job.findUnique({ where: { id: validUuid(id, "job") }, include: JOB_INCLUDE });
    if (!job) throw notFound("job", id);
    return job;
  }

  async create(input: JobInput) {
    const job = checkJobInput(input, { allowPrivateWebhooks: this.options.allowPrivateWebhooks });
    await this.checkReferences(job);
    await this.assertNameFree(job.name);
    const created = await this.db.job.create({
      data: {
        ...this.columns(job),
        remotes: { create: job.remoteIds.map((remoteId) => ({ remoteId })) },
        schedules: { create: job.schedules.map(({ id: _ignored, ...schedule }) => schedule) },
      },
    });
    return this.get(created.id);
  }

  async update(id: string, input: JobInput) {
    const existing = await this.get(id);
    const job = checkJobInput(input, {
      allowPrivateWebhooks: this.options.allowPrivateWebhooks,
      storedWebhookUrl: effectiveSettings(existing.settings).reportWebhookUrl,
    });
    await this.checkReferences(job);
    if (job.name !== existing.name) await this.assertNameFree(job.name);
    const existingIds = new Set(existing.schedules.map((s) => s.id));
    job.schedules.forEach((schedule, i) => {
      if (schedule.id && !existingIds.has(schedule.id)) {
        throw new InputError(`input.schedules.${i}.id`, `is not a schedule of this job: leave it empty to add a schedule`);
      }
    });
    const kept = new Set(job.schedules.map((s) => s.id).filter(Boolean));
    await this.db.$transaction([
      this.db.jobRemote.deleteMany({ where: { jobId: existing.id } }),
      this.db.schedule.deleteMany({ where: { jobId: existing.id, id: { notIn: [...kept] as string[] } } }),
      this.db.job.update({
        where: { id: existing.id },
        data: { ...this.columns(job), remotes: { create: job.remoteIds.map((remoteId) => ({ remoteId })) } },
      }),
      ...job.schedules.map(({ id: scheduleId, ...schedule }) =>
        scheduleId
          ? this.db.schedule.update({ where: { id: scheduleId }, data: schedule })
          : this.db.schedule.create({ data: { ...schedule, jobId: existing.id } }),
      ),
    ]);
    return this.get(existing.id);
  }

  async remove(id: string): Promise<boolean> {
    const job = await this.get(id);
    const active = await this.db.run.count({ where: { jobId: job.id, status: { in: ["PENDING", "RUNNING"] } } });
    if (active > 0) throw new CairnError(ErrorCode.Conflict, `Job ${job.name} is running: cancel its run first.`);
    // Runs and restore points keep their history (jobId becomes null); the backups stay on their remotes.
    await this.db.job.delete({ where: { id: job.id } });
    return true;
  }

  private columns(job: CheckedJob) {
    return {
      name: job.name,
      mode: job.mode,
      selection: job.selection as object,
      srUuids: job.srUuids,
      sourceRemoteId: job.sourceRemoteId,
      settings: job.settings as object,
      enabled: job.enabled,
    };
  }

  private async checkReferences(job: CheckedJob): Promise<void> {
    const remotes = await this.db.remote.findMany({ where: { id: { in: job.remoteIds } } });
    job.remoteIds.forEach((id, i) => {
      if (!remotes.some((r) => r.id === id)) throw new InputError(`input.remoteIds.${i}`, `no remote with id ${id}`);
    });
    if (job.sourceRemoteId && !(await this.db.remote.findUnique({ where: { id: job.sourceRemoteId } })))
      throw new InputError("input.sourceRemoteId", `no remote with id ${job.sourceRemoteId}: choose an existing remote as the source`);
    // A mirror copies the backups of VMs that may be long gone from every pool: its VMs are looked for on its source.
    const vmUuids = job.mode === "MIRROR" ? [] : job.selection.vmUuids;
    const knownVms = new Set(
      vmUuids.length > 0 ? (await this.db.vmInventory.findMany({ where: { uuid: { in: vmUuids } } })).map((v) => v.uuid) : [],
    );
    const healthSr = job.settings.healthCheckSrUuid;
    const seen = () => ({ vms: new Set(this.pools.vms().map((vm) => vm.uuid)), srs: new Set(this.pools.srs().map((sr) => sr.uuid)) });
    let live = seen();
    // What the pools' caches do not hold yet may have been made a moment ago by another client: caught up once, then sure.
    if (
      vmUuids.some((uuid) => !live.vms.has(uuid) && !knownVms.has(uuid)) ||
      [...job.srUuids, ...(healthSr ? [healthSr] : [])].some((uuid) => !live.srs.has(uuid))
    ) {
      await this.pools.catchUp();
      live = seen();
    }
    job.srUuids.forEach((uuid, i) => {
      if (!live.srs.has(uuid)) throw new InputError(`input.srUuids.${i}`, `no SR ${uuid} in any connected pool`);
    });
    if (healthSr && !live.srs.has(healthSr)) {
      throw new InputError("input.settings.healthCheckSrUuid", `no SR ${healthSr} in any connected pool`);
    }
    vmUuids.forEach((uuid, i) => {
      if (!live.vms.has(uuid) && !knownVms.has(uuid)) throw new InputError(`input.selection.vmUuids.${i}`, `no VM ${uuid} in any pool`);
    });
    const poolIds = job.selection.smart?.poolIds ?? [];
    if (poolIds.length > 0) {
      const pools = await this.db.pool.findMany({ where: { id: { in: poolIds } } });
      poolIds.forEach((id, i) => {
        if (!pools.some((p) => p.id === id)) throw new InputError(`input.selection.smart.poolIds.${i}`, `no pool with id ${id}`);
      });
    }
  }

  private async assertNameFree(name: string): Promise<void> {
    if (await this.db.job.findUnique({ where: { name } })) {
      throw new CairnError(ErrorCode.Conflict, `A job named ${JSON.stringify(name)} already exists: choose another name.`, {
        field: "input.name",
      });
    }
  }
}
