import { Arg, Authorized, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from "type-graphql";
import { mapConnection } from "../../services/pagination.js";
import type { GraphQLContext } from "../context.js";
import { toJob, toRemote, toRestorePoint, toRun, toSchedule } from "../mappers.js";
import { notAvailableYet } from "../not-available.js";
import { Role } from "../types/enums.js";
import { Job, Schedule } from "../types/job.js";
import { Remote } from "../types/remote.js";
import { FileDownload, FileEntry, FileRestoreInput, RestoreInput, RestorePoint, RestorePointConnection, RestorePointFilter } from "../types/restore-point.js";
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
    const page = await services.restorePoints.list(filter ?? {}, { first, after });
    return mapConnection(page, toRestorePoint);
  }

  @Authorized(Role.VIEWER)
  @Query(() => RestorePoint, { nullable: true })
  async restorePoint(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<RestorePoint> {
    return toRestorePoint(await services.restorePoints.get(id));
  }

  @Authorized(Role.VIEWER)
  @Query(() => [FileEntry], { description: "Lists a folder inside a disk of a restore point." })
  async browseRestorePoint(
    @Arg("id", () => ID) id: string,
    @Arg("disk", () => Int) _disk: number,
    @Arg("partition", () => Int, { nullable: true }) _partition: number | null,
    @Arg("path", () => String) _path: string,
    @Ctx() { services }: GraphQLContext,
  ): Promise<FileEntry[]> {
    await services.restorePoints.get(id);
    return notAvailableYet("browseRestorePoint", "file-level restore (issue 6)");
  }

  @Authorized(Role.OPERATOR)
  @Mutation(() => Run, { description: "Restores a VM as a new VM; answers at once with the restore's run." })
  async restoreVm(@Arg("input", () => RestoreInput) input: RestoreInput, @Ctx() { services }: GraphQLContext): Promise<Run> {
    await services.restorePoints.get(input.restorePointId);
    return notAvailableYet("restoreVm", "the restore engine (issue 6)");
  }

  @Authorized(Role.OPERATOR)
  @Mutation(() => FileDownload, { description: "Prepares a download of files and folders from a restore point." })
  async restoreFiles(@Arg("input", () => FileRestoreInput) input: FileRestoreInput, @Ctx() { services }: GraphQLContext): Promise<FileDownload> {
    await services.restorePoints.get(input.restorePointId);
    return notAvailableYet("restoreFiles", "file-level restore (issue 6)");
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Boolean, { description: "Deletes a restore point and its files (merging a delta chain when needed)." })
  async removeRestorePoint(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<boolean> {
    await services.restorePoints.get(id);
    return notAvailableYet("removeRestorePoint", "the backup repository (issue 5)");
  }

  @Authorized(Role.OPERATOR)
  @Mutation(() => Run, { description: "Runs a health check of a restore point now." })
  async checkRestorePoint(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<Run> {
    await services.restorePoints.get(id);
    return notAvailableYet("checkRestorePoint", "health checks (issue 6)");
  }

  @FieldResolver(() => Remote, { nullable: true })
  async remote(@Root() point: RestorePoint, @Ctx() { services }: GraphQLContext): Promise<Remote | null> {
    return point.remoteId ? toRemote(await services.remotes.get(point.remoteId)) : null;
  }

  @FieldResolver(() => Job, { nullable: true })
  async job(@Root() point: RestorePoint, @Ctx() { services }: GraphQLContext): Promise<Job | null> {
    const job = point.jobId ? await services.jobs.get(point.jobId).catch(() => null) : null;
    return job ? toJob(job) : null;
  }

  @FieldResolver(() => Schedule, { nullable: true })
  async schedule(@Root() point: RestorePoint, @Ctx() { services }: GraphQLContext): Promise<Schedule | null> {
    const job = point.jobId ? await services.jobs.get(point.jobId).catch(() => null) : null;
    const schedule = job?.schedules.find((s) => s.id === point.scheduleId);
    return schedule ? toSchedule(schedule) : null;
  }

  @FieldResolver(() => Run, { nullable: true })
  async run(@Root() point: RestorePoint, @Ctx() { services }: GraphQLContext): Promise<Run | null> {
    const run = point.runId ? await services.runs.get(point.runId).catch(() => null) : null;
    return run ? toRun(run) : null;
  }
}
