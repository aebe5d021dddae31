import { Arg, Authorized, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from "type-graphql";
import { notFound } from "../../errors.js";
import { mapConnection } from "../../services/pagination.js";
import { JOBS_WITH_SCHEDULES_BY_ID, JOB_VIEWS_BY_ID, REMOTES_BY_ID, RUNS_BY_ID, batched } from "../batch.js";
import type { GraphQLContext } from "../context.js";
import { givenField } from "../given-fields.js";
import { toRemote, toRestorePoint, toRun, toSchedule } from "../mappers.js";
import type { Services } from "../../services/services.js";
import { FileEntryType, Role } from "../types/enums.js";
import { Job, Schedule } from "../types/job.js";
import { Remote } from "../types/remote.js";
import {
  DiskPartition,
  FileDownload,
  FileEntry,
  FileRestoreInput,
  RestoreInput,
  RestorePoint,
  RestorePointConnection,
  RestorePointFilter,
  RestorePointRemoval,
  type RestorePointRemovalAction,
} from "../types/restore-point.js";
import { Run } from "../types/run.js";

@Resolver(() => RestorePoint)
export class RestoreResolver {
  @Authorized(Role.VIEWER)
  @Query(() => RestorePointConnection, { description: "Restore points, newest first." })
  async restorePoints(
    @Arg("filter", () => RestorePointFilter, { nullable: true }) filter: RestorePointFilter | null,
    @Arg("first", () => Int, { nullable: true }) first: number | null,
    @Arg("after", () => String, { nullable: true }) after: string | null,
    @Ctx() { services }: GraphQLContext,
  ) {
    // A filter on a remote or job that does not exist is NOT_FOUND, as the object itself is, rather than an empty page.
    if (filter?.remoteId) await services.remotes.get(filter.remoteId);
    if (filter?.jobId) await services.jobs.get(filter.jobId);
    const page = await services.restorePoints.list(filter ?? {}, { first, after });
    return mapConnection(page, toRestorePoint);
  }

  @Authorized(Role.VIEWER)
  @Query(() => RestorePoint, { nullable: true })
  async restorePoint(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<RestorePoint> {
    return toRestorePoint(await services.restorePoints.get(id));
  }

  @Authorized(Role.VIEWER)
  @Query(() => [FileEntry], {
    description:
      "Lists a folder inside a disk of a delta (VHD_CHAIN) restore point, read in place from the backup. disk: index from 0. partition: as Linux numbers them (1 = first); 0 = the whole disk as one file system; null = the whole disk when it has no partition table, else the first partition holding ext2/3/4 or FAT. Symlinks are listed, not followed.",
  })
  async browseRestorePoint(
    @Arg("id", () => ID) id: string,
    @Arg("disk", () => Int) disk: number,
    @Arg("partition", () => Int, { nullable: true }) partition: number | null,
    @Arg("path", () => String) path: string,
    @Ctx() { services }: GraphQLContext,
  ): Promise<FileEntry[]> {
    const entries = await fileRestoreOf(services).browse(id, disk, partition ?? null, path);
    return entries.map((entry) => ({ ...entry, type: entry.type as FileEntryType }));
  }

  @Authorized(Role.VIEWER)
  @Query(() => [DiskPartition], {
    description:
      "The partitions of a disk of a delta (VHD_CHAIN) restore point, read from the backup, in table order (or the whole disk alone, number 0, when it has no partition table), each with its size, its file system and, when Cairn cannot browse it, why: what browseRestorePoint's partition is chosen from. disk: index from 0.",
  })
  async restorePointPartitions(
    @Arg("id", () => ID) id: string,
    @Arg("disk", () => Int) disk: number,
    @Ctx() { services }: GraphQLContext,
  ): Promise<DiskPartition[]> {
    return fileRestoreOf(services).partitions(id, disk);
  }

  @Authorized(Role.OPERATOR)
  @Mutation(() => Run, {
    description: "Restores a VM as a new VM (new uuids, tagged cairn:restored); answers at once with the restore's run.",
  })
  async restoreVm(@Arg("input", () => RestoreInput) input: RestoreInput, @Ctx() { services, principal }: GraphQLContext): Promise<Run> {
    return toRun(await services.restore.restoreVm(input, principal));
  }

  @Authorized(Role.OPERATOR)
  @Mutation(() => FileDownload, {
    description:
      "Prepares a download of files and folders from a delta restore point's disk: url is /download/<token> on this server, single-use, valid 5 minutes, needing no Authorization header (the token is the credential).",
  })
  async restoreFiles(
    @Arg("input", () => FileRestoreInput) input: FileRestoreInput,
    @Ctx() { services, principal }: GraphQLContext,
  ): Promise<FileDownload> {
    return fileRestoreOf(services).prepareDownload(input, principal);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Boolean, { description: "Deletes a restore point and its files (merging a delta chain when needed)." })
  async removeRestorePoint(@Arg("id", () => ID) id: string, @Ctx() { services, log }: GraphQLContext): Promise<boolean> {
    const problems = await services.restorePoints.remove(id);
    if (problems.length > 0) log.warn({ restorePointId: id, problems }, "removeRestorePoint left work for later");
    return true;
  }

  @Authorized(Role.OPERATOR)
  @Mutation(() => Run, {
    description:
      "Runs a health check of a restore point now: restores it as a temporary VM (on the job's healthCheckSrUuid, else the point's own SR for a snapshot or replica, else the default SR of the VM's pool), starts it, waits until it runs, destroys it, and records the verdict on the restore point. Answers at once with the HEALTH_CHECK run; a VM tagged cairn:no-health-check ends SKIPPED.",
  })
  async checkRestorePoint(@Arg("id", () => ID) id: string, @Ctx() { services, principal }: GraphQLContext): Promise<Run> {
    return toRun(await services.healthChecks.checkRestorePoint(id, principal));
  }

  @Authorized(Role.OPERATOR)
  @Mutation(() => Run, {
    description:
      "Verifies a backup on a remote (an XVA or VHD_CHAIN restore point) now: reads every file of it end to end and checks every checksum written with it (the XVA's digest and chunk checksums; each VHD's footers, header, BAT and every block), without touching a pool, and records the verdict on the restore point (integrity). Answers at once with the VERIFY run, which ends FAILURE when the point is DAMAGED. repair: rewrite what can be rewritten safely (a damaged VHD footer from its intact copy; LOCAL remotes only): the verdict is then REPAIRED. A SNAPSHOT or REPLICA lives on a pool: BAD_USER_INPUT (checkRestorePoint boots it).",
  })
  async verifyRestorePoint(
    @Arg("id", () => ID) id: string,
    @Arg("repair", () => Boolean, { nullable: true, defaultValue: false }) repair: boolean | null,
    @Ctx() { services, principal }: GraphQLContext,
  ): Promise<Run> {
    return toRun(await services.verify.verifyRestorePoint(id, repair, principal));
  }

  // Batched (server/graphql/batch.ts): vmProtection and the restore points page list restore points by the hundred.
  @FieldResolver(() => Remote, { nullable: true })
  async remote(@Root() point: RestorePoint, @Ctx() context: GraphQLContext): Promise<Remote | null> {
    const row = point.remoteId ? await batched(context, REMOTES_BY_ID, point.remoteId) : undefined;
    return row ? toRemote(row) : null;
  }

  @FieldResolver(() => Job, { nullable: true })
  job(@Root() point: RestorePoint, @Ctx() context: GraphQLContext): Job | null | Promise<Job | null> {
    const given = givenField<Job | null>(point, "job");
    if (given) return given.value;
    if (!point.jobId) return null;
    return batched(context, JOB_VIEWS_BY_ID, point.jobId).then((job) => job ?? null);
  }

  @FieldResolver(() => Schedule, { nullable: true })
  async schedule(@Root() point: RestorePoint, @Ctx() context: GraphQLContext): Promise<Schedule | null> {
    const job = point.jobId ? await batched(context, JOBS_WITH_SCHEDULES_BY_ID, point.jobId) : undefined;
    const schedule = job?.schedules.find((s) => s.id === point.scheduleId);
    return schedule ? toSchedule(schedule) : null;
  }

  @FieldResolver(() => RestorePointRemoval, {
    description:
      "What removeRestorePoint would do to it, worked out now (reads the remote's VM folder, or looks at its pool): which files go, or which newer backup is merged into it, or what is destroyed on which pool, and whether it would be refused.",
  })
  async removal(@Root() point: RestorePoint, @Ctx() context: GraphQLContext): Promise<RestorePointRemoval> {
    const removal = await batched(context, REMOVALS_BY_POINT, point.id);
    if (!removal) throw notFound("restore point", point.id);
    const { nextBackup, nextRestorePoint, action, ...rest } = removal;
    return {
      ...rest,
      action: action as RestorePointRemovalAction,
      nextBackupAt: nextBackup?.timestamp ?? null,
      nextRestorePoint: nextRestorePoint ? toRestorePoint(nextRestorePoint) : null,
    };
  }

  @FieldResolver(() => Run, { nullable: true })
  async run(@Root() point: RestorePoint, @Ctx() context: GraphQLContext): Promise<Run | null> {
    const run = point.runId ? await batched(context, RUNS_BY_ID, point.runId) : undefined;
    return run ? toRun(run) : null;
  }
}

/** The removals of every point of a list at once: each remote opened once, each VM folder read once. */
const REMOVALS_BY_POINT = (ids: string[], { services }: GraphQLContext) => services.restorePoints.describeRemovals(ids);

function fileRestoreOf(services: Services) {
  return services.fileRestore;
}
