/** Run and task statuses as the dashboard colours them (issue 7): green, red, orange, grey. */
export type RunStatus = "PENDING" | "RUNNING" | "SUCCESS" | "FAILURE" | "SKIPPED" | "INTERRUPTED" | "CANCELLED";

export type StatusTone = "success" | "failure" | "active" | "neutral";

/** SUCCESS green; FAILURE red; RUNNING, PENDING and INTERRUPTED orange; SKIPPED and CANCELLED grey. */
export function statusTone(status: string): StatusTone {
  switch (status) {
    case "SUCCESS":
      return "success";
    case "FAILURE":
      return "failure";
    case "RUNNING":
    case "PENDING":
    case "INTERRUPTED":
      return "active";
    default:
      return "neutral";
  }
}

/** Statuses a run or task does not leave any more. */
export const ENDED_STATUSES: readonly string[] = ["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"];

export const ALL_STATUSES: readonly RunStatus[] = ["PENDING", "RUNNING", "SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"];

export function isEnded(status: string): boolean {
  return ENDED_STATUSES.includes(status);
}
