import { Arg, Authorized, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from "type-graphql";
import { mapConnection } from "../../services/pagination.js";
import { batched, jobView } from "../batch.js";
import type { GraphQLContext } from "../context.js";
import { toJob, toRemote, toRestorePoint, toRun, toSr } from "../mappers.js";
import { Role } from "../types/enums.js";
import { Job, JobInput } from "../types/job.js";
import { Sr } from "../types/pool.js";
import { Remote } from "../types/remote.js";
import { RetentionDecision } from "../types/retention.js";
import { Run, RunConnection } from "../types/run.js";

@Resolver(() => Job)
export class JobResolver {
  @Authorized(Role.VIEWER)
  @Query(() => [Job])
  async jobs(@Ctx() { services, receivedAt }: GraphQLContext): Promise<Job[]> {
    return (await services.jobs.list(receivedAt)).map(jobView);
  }

  @Authorized(Role.VIEWER)
  @Query(() => Job, { nullable: true })
  async job(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<Job | null> {
    return toJob(await services.jobs.get(id));
  }

  @Authorized(Role.VIEWER)
  @Query(() => [RetentionDecision], {
    description:
      "What the schedule's next run would keep and remove of its restore points on remotes (FULL, DELTA), newest first: " +
      "retention runs per VM and remote after that run's new backup, at the schedule's next fire time (now when it is " +
      "disabled), keeping the newest exportRetention and, with GFS, the oldest backup of each of the last gfsDays days, " +
      "gfsWeeks weeks, gfsMonths months and gfsYears years of the schedule's time zone. NOT_FOUND when the job or the " +
      "schedule (of that job) does not exist.",
  })
  async retentionPreview(
    @Arg("jobId", () => ID) jobId: string,
    @Arg("scheduleId", () => ID) scheduleId: string,
    @Ctx() { services }: GraphQLContext,
  ): Promise<RetentionDecision[]> {
    const decisions = await services.retentionPreview.preview(jobId, scheduleId);
    return decisions.map((decision) => ({ ...decision, restorePoint: toRestorePoint(decision.restorePoint) }));
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Job)
  async createJob(@Arg("input", () => JobInput) input: JobInput, @Ctx() { services }: GraphQLContext): Promise<Job> {
    return toJob(await services.jobs.create(input));
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Job)
  async updateJob(
    @Arg("id", () => ID) id: string,
    @Arg("input", () => JobInput) input: JobInput,
    @Ctx() { services }: GraphQLContext,
  ): Promise<Job> {
    return toJob(await services.jobs.update(id, input));
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Boolean, { description: "Deletes a job and its schedules; its runs and restore points stay in the history." })
  removeJob(@Arg("id", () => ID) id: string, @Ctx() { services }: GraphQLContext): Promise<boolean> {
    return services.jobs.remove(id);
  }

  @Authorized(Role.OPERATOR)
  @Mutation(() => Run, {
    description: "Starts a run now; answers at once with the run (PENDING or RUNNING); CONFLICT if the job is running.",
  })
  async runJob(
    @Arg("id", () => ID) id: string,
    @Arg("scheduleId", () => ID, { nullable: true }) scheduleId: string | null,
    @Ctx() { services, principal }: GraphQLContext,
  ): Promise<Run> {
    const launcher = services.runLauncher;
    const trigger = principal?.tokenKind === "API" ? "API" : "MANUAL";
    return toRun(await launcher.launchRun({ jobId: id, scheduleId, trigger }));
  }

  @FieldResolver(() => [Remote])
  async remotes(@Root() job: Job, @Ctx() context: GraphQLContext): Promise<Remote[]> {
    // Batched: the jobs list asks for the remotes of every job, which all come from one read of the remotes.
    const all = (await batched(context, ALL_REMOTES, "all")) ?? [];
    return all.filter((r) => job.remoteIds.includes(r.id)).map(toRemote);
  }

  @FieldResolver(() => Remote, { nullable: true, description: "MIRROR: the remote whose restore points are copied to remotes." })
  async sourceRemote(@Root() job: Job, @Ctx() context: GraphQLContext): Promise<Remote | null> {
    if (!job.sourceRemoteId) return null;
    const all = (await batched(context, ALL_REMOTES, "all")) ?? [];
    const source = all.find((r) => r.id === job.sourceRemoteId);
    return source ? toRemote(source) : null;
  }

  @FieldResolver(() => [Sr], { description: "The target SRs that are visible in a connected pool now." })
  srs(@Root() job: Job, @Ctx() { services }: GraphQLContext): Sr[] {
    return services.pools
      .srs()
      .filter((sr) => job.srUuids.includes(sr.uuid))
      .map(toSr);
  }

  @FieldResolver(() => Run, { nullable: true })
  async lastRun(@Root() job: Job, @Ctx() context: GraphQLContext): Promise<Run | null> {
    // Batched: one query for the last run of every job of the list, not one per job.
    const row = await batched(context, LAST_RUNS, job.id);
    return row ? toRun(row) : null;
  }

  @FieldResolver(() => RunConnection)
  async runs(
    @Root() job: Job,
    @Arg("first", () => Int, { nullable: true }) first: number | null,
    @Arg("after", () => String, { nullable: true }) after: string | null,
    @Ctx() { services }: GraphQLContext,
  ) {
    const page = await services.runs.list({ jobId: job.id }, { first, after });
    return mapConnection(page, toRun);
  }
}

const ALL_REMOTES = async (_keys: "all"[], { services, receivedAt }: GraphQLContext) =>
  new Map([["all" as const, await services.remotes.list(receivedAt)]]);

const LAST_RUNS = (jobIds: string[], { services }: GraphQLContext) => services.runs.lastRuns(jobIds);
