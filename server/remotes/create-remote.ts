import { realpath } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { EncryptedRemote } from "./encrypted/encrypted-remote.js";
import { LocalRemote } from "./local-remote.js";
import { NfsRemote } from "./nfs-remote.js";
import { RemoteError } from "./remote-error.js";
import { checkRemotePath } from "./remote-path.js";
import type { Remote, RemoteKind } from "./remote.js";
import { S3Remote, type S3RemoteOptions } from "./s3-remote.js";
import { SmbRemote } from "./smb-remote.js";

/**
 * A remote as stored and edited: plain data, from the database or the API. Secrets come decrypted
 * from the caller and are never echoed in an error.
 *
 * - LOCAL: `location` is an absolute folder path; no options, no credentials. Stored as {@link realLocalLocation} gives it.
 * - S3: `location` is `bucket` or `bucket/prefix`; `username` is the access key id and `password`
 *   the secret key (both required); options: `endpoint`, `region`, `forcePathStyle`, `partSizeMiB`,
 *   `queueSize`, `maxAttempts`, `connectionTimeoutMs`, `idleTimeoutMs`, `requestChecksumCalculation`.
 * - SMB: `location` is `//host[:port]/share[/folder]`; `username` and `password` required; options:
 *   `domain` (default WORKGROUP), `timeoutMs`.
 * - NFS: `location` is `nfs://host[:port]/export[/folder]` (NFSv3 over TCP, no kernel mount); no credentials (AUTH_SYS);
 *   options: `mountPort`, `uid`, `gid` (default 0), `timeoutMs`. Without a port, the portmapper is asked.
 *
 * Any kind: `encryptionKey`, when given, makes the remote encrypted at rest (`encrypted/`): a passphrase, or a 32-byte key
 * as 64 hex digits or base64. A secret like the password: never in a message.
 */
export interface RemoteConfig {
  kind: RemoteKind;
  location: string;
  options?: Record<string, unknown>;
  username?: string;
  password?: string;
  encryptionKey?: string;
  /**
   * The immutability window in days (0 or absent: off): every file of a backup stays immutable that long once the backup
   * is complete. LOCAL (the immutable attribute, as root) and S3 (Object Lock) only; NFS and SMB are refused.
   */
  immutabilityDays?: number;
}

/** The longest immutability window accepted: ten years, past any audit requirement, short of a typing mistake. */
export const MAX_IMMUTABILITY_DAYS = 3650;

const KINDS: readonly RemoteKind[] = ["LOCAL", "S3", "SMB", "NFS"];
const CONFIG_NAME = "the remote configuration";

function refuse(field: string, detail: string, hint?: string): never {
  throw new RemoteError({
    code: "INVALID_CONFIG",
    remote: CONFIG_NAME,
    operation: "accept",
    detail: `field "${field}": ${detail}`,
    field,
    hint,
  });
}

type OptionCheck = (value: unknown) => string | undefined;

const integerIn =
  (min: number, max: number): OptionCheck =>
  (value) =>
    typeof value === "number" && Number.isSafeInteger(value) && value >= min && value <= max
      ? undefined
      : `must be an integer from ${min} to ${max}`;

/** The S3 options a configuration may carry, each with its check. */
const S3_OPTIONS: Record<string, OptionCheck> = {
  endpoint: (value) => {
    if (typeof value !== "string") return "must be a URL string";
    try {
      const url = new URL(value);
      if (url.protocol !== "http:" && url.protocol !== "https:") return "must be an http:// or https:// URL";
      if (url.username !== "" || url.password !== "") return "must not carry credentials (use username and password)";
      return undefined;
    } catch {
      return "must be a URL such as https://s3.example.net:9000";
    }
  },
  region: (value) => (typeof value === "string" && /^[a-z0-9-]{1,64}$/.test(value) ? undefined : "must be a region name such as eu-west-1"),
  forcePathStyle: (value) => (typeof value === "boolean" ? undefined : "must be true or false"),
  partSizeMiB: integerIn(5, 5120),
  queueSize: integerIn(1, 16),
  maxAttempts: integerIn(1, 10),
  connectionTimeoutMs: integerIn(100, 600_000),
  idleTimeoutMs: integerIn(1000, 3_600_000),
  requestChecksumCalculation: (value) =>
    value === "WHEN_SUPPORTED" || value === "WHEN_REQUIRED" ? undefined : 'must be "WHEN_SUPPORTED" or "WHEN_REQUIRED"',
};

/** The SMB options a configuration may carry, each with its check. */
const SMB_OPTIONS: Record<string, OptionCheck> = {
  domain: (value) => (typeof value === "string" && /^[^\\/:*?"<>|]{1,64}$/.test(value) ? undefined : "must be a domain or workgroup name"),
  timeoutMs: integerIn(1000, 600_000),
};

function checkOptions(kind: string, options: Record<string, unknown>, table: Record<string, OptionCheck>): void {
  for (const [name, value] of Object.entries(options)) {
    const check = table[name];
    if (check === undefined) refuse(`options.${name}`, `unknown ${kind} option; known: ${Object.keys(table).join(", ")}`);
    const problem = check(value);
    if (problem !== undefined) refuse(`options.${name}`, problem);
  }
}

/** The NFS options a configuration may carry, each with its check. */
const NFS_OPTIONS: Record<string, OptionCheck> = {
  mountPort: integerIn(1, 65_535),
  uid: integerIn(0, 4_294_967_295),
  gid: integerIn(0, 4_294_967_295),
  timeoutMs: integerIn(1000, 600_000),
};

/** `nfs://host[:port]/path`; the host is a name, an IPv4 address or a bracketed IPv6 one. */
const NFS_LOCATION = /^nfs:\/\/([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?(\/.*)$/;

/** `//host[:port]/share[/folder]`; the host is a name, an IPv4 address or a bracketed IPv6 one. */
const SMB_LOCATION = /^\/\/([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?\/([^/\\]+)(?:\/(.*))?$/;

/** S3 bucket naming rules (lower case, digits, dots, hyphens; 3 to 63 characters). */
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Builds a {@link Remote} from a configuration, checking every field first. Does no I/O: call
 * `open()` on the result to check that the storage is really there.
 * Throws a `RemoteError` INVALID_CONFIG whose `field` is the faulty field (its message names it too).
 */
export function createRemote(config: RemoteConfig): Remote {
  if (config === null || typeof config !== "object") refuse("config", "must be an object");
  const { encryptionKey } = config;
  if (encryptionKey !== undefined && typeof encryptionKey !== "string") refuse("encryptionKey", "must be a string");
  const days = checkImmutabilityDays(config);
  const storage = createPlainRemote(config);
  if (days > 0) storage.immutabilityDays = days;
  return encryptionKey === undefined || encryptionKey === "" ? storage : new EncryptedRemote(storage, encryptionKey);
}

function checkImmutabilityDays(config: RemoteConfig): number {
  const days = config.immutabilityDays ?? 0;
  if (!Number.isSafeInteger(days) || days < 0 || days > MAX_IMMUTABILITY_DAYS)
    refuse("immutabilityDays", `must be a whole number of days from 0 to ${MAX_IMMUTABILITY_DAYS}, got ${JSON.stringify(days)}`);
  if (days > 0 && (config.kind === "NFS" || config.kind === "SMB")) {
    refuse(
      "immutabilityDays",
      `an ${config.kind} remote cannot be immutable: the server decides; Cairn cannot make files immutable over NFS/SMB`,
      "set the window to 0, or use a LOCAL remote (as root) or an S3 bucket with Object Lock; snapshots or WORM shares on the server itself protect an NFS or SMB share",
    );
  }
  return days;
}

function createPlainRemote(config: RemoteConfig): Remote {
  const { kind, location, options = {}, username, password } = config;
  if (!KINDS.includes(kind)) refuse("kind", `must be one of ${KINDS.join(", ")}, got ${JSON.stringify(kind)}`);
  if (typeof location !== "string" || location.trim() === "") refuse("location", "must be a non-empty string");
  if (options === null || typeof options !== "object" || Array.isArray(options)) refuse("options", "must be an object");
  if (username !== undefined && typeof username !== "string") refuse("username", "must be a string");
  if (password !== undefined && typeof password !== "string") refuse("password", "must be a string");

  switch (kind) {
    case "LOCAL":
      return createLocal(location, options, username, password);
    case "S3":
      return createS3(location, options, username, password);
    case "SMB":
      return createSmb(location, options, username, password);
    case "NFS":
      return createNfs(location, options, username, password);
  }
}

function createLocal(location: string, options: Record<string, unknown>, username?: string, password?: string): Remote {
  checkLocalLocation(location);
  const unknown = Object.keys(options)[0];
  if (unknown !== undefined) refuse(`options.${unknown}`, "LOCAL remotes take no options");
  if (username !== undefined && username !== "") refuse("username", "LOCAL remotes take no credentials");
  if (password !== undefined && password !== "") refuse("password", "LOCAL remotes take no credentials");
  return new LocalRemote(location);
}

function checkLocalLocation(location: string): void {
  if (location.includes("\0")) refuse("location", "a LOCAL remote's location must not contain a NUL character");
  if (!isAbsolute(location)) {
    refuse(
      "location",
      `a LOCAL remote's location must be an absolute folder path, from the root (got ${JSON.stringify(location.slice(0, 200))})`,
      "write it from the root, e.g. /srv/backups/cairn: a relative path would depend on the folder Cairn was started in",
    );
  }
}

/**
 * The folder a LOCAL location really is: `..` and `.` resolved, and every symbolic link followed (fs.realpath), so what is
 * stored and shown is where backups are written, not a path that says one place and leads to another. A folder that does
 * not exist keeps its lexically resolved form (opening the remote then says it is missing).
 * Throws a `RemoteError` INVALID_CONFIG (field `location`) for a relative path.
 */
export async function realLocalLocation(location: string): Promise<string> {
  checkLocalLocation(location);
  const resolved = resolve(location);
  try {
    return await realpath(resolved);
  } catch {
    // Missing or unreadable: the probe that follows reports it in its own words.
    return resolved;
  }
}

function createS3(location: string, options: Record<string, unknown>, username?: string, password?: string): Remote {
  const slash = location.indexOf("/");
  const bucket = slash === -1 ? location : location.slice(0, slash);
  const prefixText = slash === -1 ? "" : location.slice(slash + 1);
  if (!BUCKET_NAME.test(bucket)) refuse("location", `"${bucket}" is not a valid bucket name`, 'write "bucket" or "bucket/folder"');
  let prefix = "";
  try {
    prefix = checkRemotePath(prefixText, { remote: CONFIG_NAME, operation: "accept", allowRoot: true });
  } catch {
    refuse("location", "the folder after the bucket name must be a relative path without '.', '..' or empty parts");
  }
  checkOptions("S3", options, S3_OPTIONS);
  if (username === undefined || username === "") refuse("username", "an S3 remote needs the access key id as username");
  if (password === undefined || password === "") refuse("password", "an S3 remote needs the secret access key as password");
  const s3Options: S3RemoteOptions = {
    bucket,
    prefix,
    accessKeyId: username,
    secretAccessKey: password,
    endpoint: options.endpoint as string | undefined,
    region: options.region as string | undefined,
    forcePathStyle: options.forcePathStyle as boolean | undefined,
    partSizeBytes: options.partSizeMiB === undefined ? undefined : (options.partSizeMiB as number) * 1024 * 1024,
    queueSize: options.queueSize as number | undefined,
    maxAttempts: options.maxAttempts as number | undefined,
    connectionTimeoutMs: options.connectionTimeoutMs as number | undefined,
    idleTimeoutMs: options.idleTimeoutMs as number | undefined,
    requestChecksumCalculation: options.requestChecksumCalculation as S3RemoteOptions["requestChecksumCalculation"],
  };
  return new S3Remote(s3Options);
}

function createSmb(location: string, options: Record<string, unknown>, username?: string, password?: string): Remote {
  const match = SMB_LOCATION.exec(location);
  if (match === null) refuse("location", "an SMB location is //host[:port]/share[/folder]", "for example //nas.example.net/backups/cairn");
  const [, host, portText, share, folderText = ""] = match;
  const port = portText === undefined ? 445 : Number(portText);
  if (port < 1 || port > 65_535) refuse("location", `port ${port} is out of range`);
  let folder = "";
  try {
    folder = checkRemotePath(folderText, { remote: CONFIG_NAME, operation: "accept", allowRoot: true });
  } catch {
    refuse("location", "the folder after the share name must be a relative path without '.', '..' or empty parts");
  }
  checkOptions("SMB", options, SMB_OPTIONS);
  if (username === undefined || username === "") refuse("username", "an SMB remote needs a user name");
  if (password === undefined || password === "") refuse("password", "an SMB remote needs a password");
  return new SmbRemote({
    host: host.replace(/^\[|\]$/g, ""),
    port,
    share,
    folder,
    username,
    password,
    domain: options.domain as string | undefined,
    timeoutMs: options.timeoutMs as number | undefined,
  });
}

/**
 * The location's path is the export followed by an optional folder in it; which part is the export is found at `open()`
 * (the longest leading part the server mounts), since nothing in the syntax can tell.
 */
function createNfs(location: string, options: Record<string, unknown>, username?: string, password?: string): Remote {
  const match = NFS_LOCATION.exec(location);
  if (match === null) {
    refuse("location", "an NFS location is nfs://host[:port]/export[/folder]", "for example nfs://nas.example.net/srv/backups/cairn");
  }
  const [, host, portText, pathText] = match;
  const port = portText === undefined ? undefined : Number(portText);
  if (port !== undefined && (port < 1 || port > 65_535)) refuse("location", `port ${port} is out of range`);
  let path = "";
  try {
    path = checkRemotePath(pathText.slice(1), { remote: CONFIG_NAME, operation: "accept", allowRoot: true });
  } catch {
    refuse(
      "location",
      "the export path must be an absolute path without '.', '..' or empty parts",
      "for example nfs://nas.example.net/srv/backups",
    );
  }
  checkOptions("NFS", options, NFS_OPTIONS);
  const hint = "NFS version 3 authenticates by uid and gid (AUTH_SYS): set options.uid and options.gid instead";
  if (username !== undefined && username !== "") refuse("username", "NFS remotes take no user name", hint);
  if (password !== undefined && password !== "") refuse("password", "NFS remotes take no password", hint);
  return new NfsRemote({
    host: host.replace(/^\[|\]$/g, ""),
    port,
    exportPath: `/${path}`,
    mountPort: options.mountPort as number | undefined,
    uid: options.uid as number | undefined,
    gid: options.gid as number | undefined,
    timeoutMs: options.timeoutMs as number | undefined,
  });
}
