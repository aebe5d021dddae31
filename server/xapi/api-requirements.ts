/**
 * The XAPI versions Cairn's calls need (the table in server/xapi/README.md, from the datamodel's lifecycle entries), and what
 * an older pool master cannot do. Checked once per connection against `host.API_version_major/minor` of the master.
 */

export interface ApiVersion {
  major: number;
  minor: number;
}

interface Requirement {
  since: ApiVersion;
  /** The release that introduced it, as the datamodel names it. */
  release: string;
  /** What does not work below `since`, in words an admin reads. */
  missing: string;
}

// Newest first: the warning names the most basic gaps last.
const REQUIREMENTS: readonly Requirement[] = [
  {
    since: { major: 2, minor: 8 },
    release: "XenServer 7.3",
    missing:
      "CBT + NBD delta backups (VDI.enable_cbt, VDI.list_changed_blocks, VDI.get_nbd_info: jobs with cbtNbd take the export path instead)",
  },
  {
    since: { major: 2, minor: 3 },
    release: "XenServer 6.5",
    missing: "delta backups and continuous replication (GET /export_raw_vdi?format=vhd&base=, PUT /import_raw_vdi?format=vhd)",
  },
  {
    since: { major: 1, minor: 10 },
    release: "XenServer 6.1",
    missing: "event.inject (the client falls back to the older event.next, slower to notice changes)",
  },
  {
    since: { major: 1, minor: 9 },
    release: "XenServer 6.0",
    missing: "event.from (live updates of the pool's objects)",
  },
  {
    since: { major: 1, minor: 3 },
    release: "XenServer 5.0",
    missing: "VM.snapshot, VM tags and blocked_operations (every backup)",
  },
];

/** The oldest API version with everything Cairn calls. */
export const OLDEST_FULLY_SUPPORTED: ApiVersion = REQUIREMENTS[0].since;

function below(version: ApiVersion, than: ApiVersion): boolean {
  return version.major < than.major || (version.major === than.major && version.minor < than.minor);
}

/** What will not work on a pool master of `version`; empty when it has everything. */
export function missingFeatures(version: ApiVersion): string[] {
  return REQUIREMENTS.filter((requirement) => below(version, requirement.since)).map(
    (requirement) => `${requirement.missing} needs API ${requirement.since.major}.${requirement.since.minor} (${requirement.release})`,
  );
}

/** The warning for a pool whose master speaks `version`, or undefined when it supports everything Cairn calls. */
export function apiVersionWarning(version: ApiVersion): string | undefined {
  const missing = missingFeatures(version);
  if (missing.length === 0) return undefined;
  return (
    `The pool master speaks XAPI ${version.major}.${version.minor}, older than ${OLDEST_FULLY_SUPPORTED.major}.${OLDEST_FULLY_SUPPORTED.minor} ` +
    `(${REQUIREMENTS[0].release}): ${missing.join("; ")}. Upgrade the pool to use these.`
  );
}

/** The master's API version from the client's cached records, or undefined when they are not loaded. */
export function masterApiVersion(records: Iterable<{ $type: string; $ref: string; [field: string]: unknown }>): ApiVersion | undefined {
  let masterRef: unknown;
  const hosts = new Map<string, { [field: string]: unknown }>();
  for (const record of records) {
    if (record.$type === "pool") masterRef = record.master;
    else if (record.$type === "host") hosts.set(record.$ref, record);
  }
  const master = typeof masterRef === "string" ? hosts.get(masterRef) : undefined;
  const major = Number(master?.API_version_major);
  const minor = Number(master?.API_version_minor);
  if (!Number.isInteger(major) || !Number.isInteger(minor)) return undefined;
  return { major, minor };
}
