/**
 * The dashboard's sections, in nav order. Each one says what it will do and which API operations it will
 * use, so its placeholder page can be honest about what exists today.
 */
export interface Section {
  href: string;
  label: string;
  /** One sentence: what an administrator will do there. */
  purpose: string;
  /** Operations of the GraphQL API (API.md) that already describe this section's data. */
  operations: readonly string[];
}

export const sections: readonly Section[] = [
  {
    href: "/",
    label: "Overview",
    purpose:
      "Every job with its schedules, next run and last results, the VMs without a good restore point in the last 24 hours, and transfer totals per day.",
    operations: ["jobs", "vmProtection", "backupStats"],
  },
  {
    href: "/jobs",
    label: "Jobs",
    purpose: "Create and edit backup jobs (mode, VMs, targets, schedules and retention), run them now, enable or disable them.",
    operations: ["jobs", "job", "createJob", "updateJob", "runJob", "removeJob"],
  },
  {
    href: "/logs",
    label: "Logs",
    purpose: "Every run, newest first, filtered by job, status and time, with each run's task tree updating live while it runs.",
    operations: ["runs", "run", "runUpdated", "taskUpdated", "cancelRun"],
  },
  {
    href: "/restore",
    label: "Restore",
    purpose: "Pick a restore point and restore the VM onto any SR of any connected pool, or browse its files and download some.",
    operations: ["restorePoints", "restoreVm", "browseRestorePoint", "restoreFiles"],
  },
  {
    href: "/remotes",
    label: "Remotes",
    purpose: "Add local, SMB, NFS and S3 remotes, see their space and restore points, and test their speed.",
    operations: ["remotes", "createRemote", "updateRemote", "testRemote", "scanRemote"],
  },
  {
    href: "/pools",
    label: "Pools",
    purpose: "Connect XCP-ng and XenServer pools, see their status and errors, and reconnect them.",
    operations: ["pools", "connectPool", "updatePool", "removePool"],
  },
];

/** The section a path belongs to (its first segment), if any. */
export function sectionOf(pathname: string): Section | undefined {
  const first = `/${pathname.split("/")[1] ?? ""}`;
  return sections.find((section) => section.href === first);
}
