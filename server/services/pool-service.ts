/** Pools: connect, update, remove, and the live VMs, SRs and hosts they hold. */
import type { Db } from "../db/prisma.js";
import { CairnError, ErrorCode, InputError, notFound } from "../errors.js";
import type { SecretBox } from "../security/secret-box.js";
import { type HostView, listHosts, listSrs, listVms, type SrView, type VmView } from "../xapi/inventory.js";
import { describeXapiError, type PoolCredentials } from "../xapi/pool-connection.js";
import { VmOperations } from "../xapi/vm-operations.js";
import { canonicalFingerprint, type PresentedCertificate, presentedCertificate } from "../xapi/tls-trust.js";
import type { ConnectionChange, PoolRegistry } from "../xapi/pool-registry.js";
import { validUuid } from "../domain/ids.js";
import { httpUrl, requiredText } from "./input-checks.js";

export interface PoolInput {
  name: string;
  url: string;
  username: string;
  /** Required to connect; on update, absent keeps the stored password. */
  password?: string | null;
  allowUnauthorized?: boolean | null;
  /** The SHA-256 fingerprint the pool's certificate must have; absent: the one it presents now (trust on first use). */
  tlsFingerprint?: string | null;
}

type CheckedPool = PoolCredentials & { name: string };

/** How long {@link PoolService.catchUp} waits for one pool: a pool that does not answer by then is not waited for. */
const CATCH_UP_LIMIT_MS = 10_000;

export interface HostDetails extends HostView {
  /** Whether the host is the pool's master (the one Cairn talks to). */
  master: boolean;
  /** Product and version the host runs ("XCP-ng 8.3.0"), from its software_version; null when it does not say. */
  version: string | null;
}

export interface VmFilter {
  poolId?: string | null;
  search?: string | null;
  tags?: string[] | null;
}

export class PoolService {
  constructor(
    private readonly db: Db,
    private readonly registry: PoolRegistry,
    private readonly secrets: SecretBox,
  ) {}

  list() {
    return this.db.pool.findMany({ orderBy: { name: "asc" } });
  }

  async get(id: string) {
    const pool = await this.db.pool.findUnique({ where: { id: validUuid(id, "pool") } });
    if (!pool) throw notFound("pool", id);
    return pool;
  }

  async connect(input: PoolInput) {
    const checked = this.check(input, true);
    await this.assertNameFree(checked.name);
    await this.assertAddressFree(checked.url);
    checked.tlsFingerprint = await this.certificateToTrust(checked, checked.tlsFingerprint);
    const pool = await this.db.pool.create({
      data: { ...this.columns(checked), status: "CONNECTING" },
    });
    try {
      await this.registry.connectNow(pool.id, checked);
    } catch (error) {
      await this.db.pool.delete({ where: { id: pool.id } });
      throw connectionRefused(checked.url, error);
    }
    return this.get(pool.id);
  }

  async update(id: string, input: PoolInput) {
    const existing = await this.get(id);
    const password = input.password ? input.password : this.secrets.open(existing.passwordSealed);
    const checked = this.check({ ...input, password }, true);
    if (checked.name !== existing.name) await this.assertNameFree(checked.name);
    await this.assertAddressFree(checked.url, existing.id);
    // The pin stays unless the admin gives another one or points the pool at another address (a first use again).
    const samePlace = poolAddressKey(checked.url) === poolAddressKey(existing.url);
    checked.tlsFingerprint =
      samePlace && !checked.tlsFingerprint && existing.tlsFingerprint
        ? existing.tlsFingerprint
        : await this.certificateToTrust(checked, checked.tlsFingerprint);
    try {
      await this.registry.connectNow(existing.id, checked);
    } catch (error) {
      throw connectionRefused(checked.url, error);
    }
    await this.db.pool.update({ where: { id: existing.id }, data: this.columns(checked) });
    return this.get(existing.id);
  }

  /**
   * Trusts the certificate the pool presents now, after its admin checked that `fingerprint` is the one on the host (a
   * replaced certificate is accepted on purpose only), and reconnects.
   */
  async trustCertificate(id: string, fingerprint: string) {
    const existing = await this.get(id);
    const given = canonicalFingerprint(fingerprint);
    if (given === undefined) throw new InputError("fingerprint", NOT_A_FINGERPRINT);
    const credentials: CheckedPool = { ...this.registry.credentialsOf(existing), name: existing.name };
    credentials.tlsFingerprint = await this.certificateToTrust({ ...credentials, allowUnauthorized: false }, given, "fingerprint");
    try {
      await this.registry.connectNow(existing.id, credentials);
    } catch (error) {
      throw connectionRefused(existing.url, error);
    }
    await this.db.pool.update({ where: { id: existing.id }, data: { tlsFingerprint: credentials.tlsFingerprint } });
    return this.get(existing.id);
  }

  /** The certificate the pool presents while Cairn refuses it (it changed, or was never pinned); null otherwise. */
  presentedFingerprint(poolId: string): string | null {
    return this.registry.presentedFingerprintOf(poolId) ?? null;
  }

  /** What will not work on the pool (an old XAPI), live; null when everything Cairn calls is there. */
  warning(poolId: string): string | null {
    return this.registry.warningOf(poolId) ?? null;
  }

  async remove(id: string): Promise<boolean> {
    const pool = await this.get(id);
    await this.registry.detach(pool.id, { forget: true });
    await this.db.pool.delete({ where: { id: pool.id } });
    return true;
  }

  /** Live status of a pool in this process (the row's status for pools this process does not hold). */
  status(pool: { id: string; status: string; lastError: string | null }) {
    const connection = this.registry.get(pool.id);
    return connection ? { status: connection.status, lastError: connection.lastError ?? null } : pool;
  }

  vms(filter: VmFilter = {}): VmView[] {
    const search = filter.search?.trim().toLowerCase();
    const tags = filter.tags ?? [];
    return this.connections(filter.poolId)
      .flatMap((c) => listVms(c))
      .filter((vm) => !search || vm.name.toLowerCase().includes(search) || vm.uuid === search)
      .filter((vm) => tags.every((tag) => vm.tags.includes(tag)))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Waits until the cache of every connected pool has caught up with the pool (one XAPI barrier each): a VM or an SR made
   * a moment ago through another client (xe, Xen Orchestra, a script) is then seen. For lookups that would otherwise
   * refuse what they do not find; a pool that does not answer within {@link CATCH_UP_LIMIT_MS} is not waited for.
   */
  async catchUp(): Promise<void> {
    const connected = this.registry.all().filter((connection) => connection.status === "CONNECTED");
    await Promise.all(
      connected.map(async (connection) => {
        let timer: NodeJS.Timeout | undefined;
        const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, CATCH_UP_LIMIT_MS)));
        try {
          await Promise.race([new VmOperations(connection).sync().catch(() => undefined), limit]);
        } finally {
          clearTimeout(timer);
        }
      }),
    );
  }

  srs(poolId?: string | null): SrView[] {
    return this.connections(poolId)
      .flatMap((c) => listSrs(c))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The pool's hosts, the master first, each with the product and version it runs when the host says. */
  hosts(poolId: string): HostDetails[] {
    const connection = this.registry.get(poolId);
    if (!connection) return [];
    const masterRef = connection.records("pool")[0]?.master;
    const records = new Map(connection.records("host").map((record) => [record.$ref, record]));
    return listHosts(connection)
      .map((host) => ({ ...host, master: host.ref === masterRef, version: productVersion(records.get(host.ref)) }))
      .sort((a, b) => Number(b.master) - Number(a.master) || a.name.localeCompare(b.name));
  }

  /** Whether an SR is shared by the pool's hosts (false when the pool or the SR is not known live). */
  srShared(poolId: string, srUuid: string): boolean {
    return (
      this.registry
        .get(poolId)
        ?.records("SR")
        .find((record) => record.uuid === srUuid)?.shared === true
    );
  }

  /** The changes of the pool's connection state, newest first (stored: kept across restarts). */
  connectionHistory(poolId: string): Promise<ConnectionChange[]> {
    return this.registry.historyOf(poolId);
  }

  private connections(poolId?: string | null) {
    if (poolId) {
      const connection = this.registry.get(validUuid(poolId, "pool"));
      return connection ? [connection] : [];
    }
    return this.registry.all();
  }

  /**
   * The fingerprint to pin for an HTTPS pool: the certificate it presents now, which must be `wanted` when the admin gave
   * one. Undefined for plain HTTP and for pools that accept any certificate.
   */
  private async certificateToTrust(pool: CheckedPool, wanted: string | null | undefined, field = "input.tlsFingerprint") {
    if (new URL(pool.url).protocol !== "https:" || pool.allowUnauthorized) return wanted ?? null;
    let presented: PresentedCertificate;
    try {
      presented = await presentedCertificate(pool.url);
    } catch (error) {
      throw connectionRefused(pool.url, error);
    }
    if (wanted && wanted !== presented.fingerprint) {
      throw new InputError(
        field,
        `the pool at ${pool.url} presents a certificate with fingerprint ${presented.fingerprint}, not ${wanted}: check the fingerprint on the host (and that nothing intercepts the connection)`,
      );
    }
    return presented.fingerprint;
  }

  private check(input: PoolInput, passwordRequired: boolean): CheckedPool {
    const name = requiredText(input.name, "input.name", 100);
    const url = httpUrl(input.url, "input.url");
    const username = requiredText(input.username, "input.username", 200);
    if (passwordRequired && !input.password) throw new InputError("input.password", "is required to connect");
    let tlsFingerprint: string | undefined;
    if (input.tlsFingerprint) {
      tlsFingerprint = canonicalFingerprint(input.tlsFingerprint);
      if (tlsFingerprint === undefined) throw new InputError("input.tlsFingerprint", NOT_A_FINGERPRINT);
    }
    return { name, url, username, password: input.password ?? "", allowUnauthorized: input.allowUnauthorized ?? false, tlsFingerprint };
  }

  private columns(checked: CheckedPool) {
    return {
      name: checked.name,
      url: checked.url,
      username: checked.username,
      passwordSealed: this.secrets.seal(checked.password),
      allowUnauthorized: checked.allowUnauthorized,
      tlsFingerprint: checked.tlsFingerprint ?? null,
    };
  }

  /** One pool, one row: a pool connected twice would list every VM and SR twice, and back them up twice. */
  private async assertAddressFree(url: string, exceptId?: string): Promise<void> {
    const key = poolAddressKey(url);
    const pools = await this.db.pool.findMany({ select: { id: true, name: true, url: true } });
    const same = pools.find((pool) => pool.id !== exceptId && poolAddressKey(pool.url) === key);
    if (same) {
      throw new CairnError(
        ErrorCode.Conflict,
        `Pool ${same.name} is already connected at this address (${same.url}): edit or remove it rather than connecting the pool twice.`,
        { field: "input.url" },
      );
    }
  }

  private async assertNameFree(name: string): Promise<void> {
    if (await this.db.pool.findUnique({ where: { name } })) {
      throw new CairnError(ErrorCode.Conflict, `A pool named ${JSON.stringify(name)} already exists: choose another name.`, {
        field: "input.name",
      });
    }
  }
}

/**
 * What makes two pool URLs the same address: scheme and host case, a default port written or not, a trailing dot on the
 * host and a trailing slash make no difference.
 */
export function poolAddressKey(url: string): string {
  try {
    const parsed = new URL(url.trim());
    const host = parsed.hostname.replace(/\.$/, "");
    return `${parsed.protocol}//${host}${parsed.port ? `:${parsed.port}` : ""}${parsed.pathname.replace(/\/+$/, "")}${parsed.search}`;
  } catch {
    return url.trim().toLowerCase();
  }
}

/** "XCP-ng 8.3.0" from a host's software_version (product_brand and product_version, or platform_name and platform_version). */
function productVersion(host: Record<string, unknown> | undefined): string | null {
  const software = host?.software_version;
  if (typeof software !== "object" || software === null) return null;
  const field = (key: string) => {
    const value = (software as Record<string, unknown>)[key];
    return typeof value === "string" && value.trim() !== "" ? value.trim() : undefined;
  };
  const version = field("product_version") ?? field("platform_version");
  if (version === undefined) return null;
  const brand = field("product_brand") ?? field("platform_name");
  return brand ? `${brand} ${version}` : version;
}

const NOT_A_FINGERPRINT =
  "is not a SHA-256 fingerprint: give the 64 hexadecimal digits (AB:CD:… as openssl x509 -fingerprint -sha256 prints them)";

function connectionRefused(url: string, error: unknown): CairnError {
  const reason = describeXapiError(error);
  if (reason.startsWith("SESSION_AUTHENTICATION_FAILED")) {
    return new InputError("input.password", `the pool at ${url} refused this user name and password`);
  }
  return new CairnError(
    ErrorCode.Unavailable,
    `Could not connect to the pool at ${url}: ${reason}. Check the URL and that the host is reachable.`,
    {},
    { cause: error },
  );
}
