/** Job actions shared by the jobs list and a job's page. */
import type { ApiClient } from "./api/client.js";
import { JobQuery, RunJobMutation, UpdateJobMutation, type JobDetail } from "./api/operations-jobs.js";
import { draftFromJob, draftToInput } from "./job-draft.js";

/**
 * Starts a run now and answers its id; `scheduleId` says whose retention it keeps (null: the server's choice).
 * CONFLICT (already running) rejects with the server's message.
 */
export async function runJobNow(client: ApiClient, jobId: string, scheduleId: string | null = null): Promise<string> {
  const { runJob } = await client.request(RunJobMutation, { id: jobId, scheduleId });
  return runJob.id;
}

/** Enables or disables a job: updateJob replaces the whole job, so it is read first and sent back whole. */
export async function setJobEnabled(client: ApiClient, jobId: string, enabled: boolean): Promise<JobDetail> {
  const { job } = await client.request(JobQuery, { id: jobId });
  if (!job) throw new Error("This job no longer exists.");
  const input = { ...draftToInput(draftFromJob(job)), enabled };
  return (await client.request(UpdateJobMutation, { id: jobId, input })).updateJob;
}
