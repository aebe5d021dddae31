/**
 * Slows down password guessing (sign-in, and the current password of changePassword): failures are counted per user name and
 * per client address, and past a few of them each further attempt must wait a delay that doubles with every failure, up to a
 * cap. An attempt inside the delay is refused before its password is checked, so a guess there costs the attacker a refusal,
 * not a verdict.
 *
 * No permanent lockout: the delay never exceeds `maxDelayMs`, and counts are forgotten after `forgetAfterMs` of quiet. An
 * attacker hammering `admin` from elsewhere would still make its real owner wait; so a name that signed in successfully from
 * an address keeps, for `trustMs`, a bucket of its own for that (name, address) pair instead of the shared name bucket: the
 * admin signs in from the machines it used before whatever strangers try. That pair bucket is not reset by other names'
 * successes from the same address, so an attacker sharing the address cannot use its own account to reset the admin's count.
 *
 * State lives in memory, per process: several Cairn processes on one database each throttle on their own (an attacker
 * spreading guesses across them gets each process's allowance), and a restart forgets it. That is the accepted trade for not
 * writing to the database on every failed guess; the delays still make a brute force hopeless.
 */
import type { Clock } from "../domain/clock.js";
import { systemClock } from "../domain/clock.js";
import { CairnError, ErrorCode } from "../errors.js";

export interface LoginThrottleOptions {
  clock?: Clock;
  /** Failures of one user name (from any address) before the next attempt must wait. @default 5 */
  freeFailuresPerName?: number;
  /** Failures from one client address (for any names) before the next attempt must wait. @default 20 */
  freeFailuresPerAddress?: number;
  /** The delay after the last allowed failure; each further failure doubles it. @default 1 second */
  baseDelayMs?: number;
  /** The longest delay: the worst an attacker can impose on a user name. @default 15 minutes */
  maxDelayMs?: number;
  /** Quiet time after the last delay ends after which a bucket's failures are forgotten. @default 15 minutes */
  forgetAfterMs?: number;
  /** How long a successful sign-in makes its address trusted for that name. @default 30 days */
  trustMs?: number;
  /** Buckets kept per kind before the quiet ones (then the oldest) are dropped, so that sprayed names cannot fill memory. */
  maxEntries?: number;
}

interface Bucket {
  failures: number;
  /** When the last failure happened (ms since the epoch). */
  lastFailureAt: number;
  /** Until when attempts are refused (0: not blocked). */
  blockedUntil: number;
}

type Scope = "name" | "address";

const MESSAGES: Record<Scope, string> = {
  name: "Too many failed sign-ins for this user name",
  address: "Too many failed sign-ins from this address",
};

export class LoginThrottle {
  private readonly clock: Clock;
  private readonly settings: Required<Omit<LoginThrottleOptions, "clock">>;
  private readonly names = new Map<string, Bucket>();
  private readonly addresses = new Map<string, Bucket>();
  /** Keyed by `name\naddress`: the pair's own bucket while the address is trusted for the name. */
  private readonly pairs = new Map<string, Bucket>();
  /** `name\naddress` -> until when the address is trusted for the name. */
  private readonly trusted = new Map<string, number>();

  constructor(options: LoginThrottleOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.settings = {
      freeFailuresPerName: options.freeFailuresPerName ?? 5,
      freeFailuresPerAddress: options.freeFailuresPerAddress ?? 20,
      baseDelayMs: options.baseDelayMs ?? 1000,
      maxDelayMs: options.maxDelayMs ?? 15 * 60_000,
      forgetAfterMs: options.forgetAfterMs ?? 15 * 60_000,
      trustMs: options.trustMs ?? 30 * 24 * 3600_000,
      maxEntries: options.maxEntries ?? 10_000,
    };
  }

  /** Throws RATE_LIMITED (with `retryAfterSeconds`) when this attempt must wait; call before checking the password. */
  check(username: string, address: string | undefined): void {
    const now = this.clock.now().getTime();
    const addressBucket = address === undefined ? undefined : this.live(this.addresses, address, now);
    if (addressBucket && addressBucket.blockedUntil > now) throw this.refusal("address", addressBucket.blockedUntil - now);
    const nameBucket = this.nameBucketOf(username, address, now);
    if (nameBucket && nameBucket.blockedUntil > now) throw this.refusal("name", nameBucket.blockedUntil - now);
  }

  /** Records a wrong password (or an unknown name: both count alike, so that the throttle does not tell which names exist). */
  failed(username: string, address: string | undefined): void {
    const now = this.clock.now().getTime();
    const name = nameKey(username);
    this.count(this.names, name, this.settings.freeFailuresPerName, now);
    if (address === undefined) return;
    this.count(this.addresses, address, this.settings.freeFailuresPerAddress, now);
    // Counted even when not trusted yet: a pair that becomes trusted starts with what was tried from there.
    this.count(this.pairs, pairKey(name, address), this.settings.freeFailuresPerName, now);
  }

  /** A right password: forgets this name's and this address's failures, and trusts the address for the name. */
  succeeded(username: string, address: string | undefined): void {
    const name = nameKey(username);
    this.names.delete(name);
    if (address === undefined) return;
    this.addresses.delete(address);
    const pair = pairKey(name, address);
    this.pairs.delete(pair);
    this.trusted.delete(pair);
    this.trusted.set(pair, this.clock.now().getTime() + this.settings.trustMs);
    prune(this.trusted, this.settings.maxEntries, (until) => until <= this.clock.now().getTime());
  }

  private nameBucketOf(username: string, address: string | undefined, now: number): Bucket | undefined {
    const name = nameKey(username);
    if (address !== undefined) {
      const pair = pairKey(name, address);
      const trustedUntil = this.trusted.get(pair);
      if (trustedUntil !== undefined && trustedUntil > now) return this.live(this.pairs, pair, now);
    }
    return this.live(this.names, name, now);
  }

  /** The bucket, unless its failures are old enough to be forgotten. */
  private live(map: Map<string, Bucket>, key: string, now: number): Bucket | undefined {
    const bucket = map.get(key);
    if (bucket && this.forgotten(bucket, now)) {
      map.delete(key);
      return undefined;
    }
    return bucket;
  }

  private forgotten(bucket: Bucket, now: number): boolean {
    return now - Math.max(bucket.lastFailureAt, bucket.blockedUntil) > this.settings.forgetAfterMs;
  }

  private count(map: Map<string, Bucket>, key: string, free: number, now: number): void {
    const bucket = this.live(map, key, now) ?? { failures: 0, lastFailureAt: now, blockedUntil: 0 };
    bucket.failures += 1;
    bucket.lastFailureAt = now;
    const beyond = bucket.failures - free;
    if (beyond >= 0) {
      // 2^beyond overflows to Infinity long after the cap is reached: Math.min keeps it finite.
      bucket.blockedUntil = now + Math.min(this.settings.baseDelayMs * 2 ** beyond, this.settings.maxDelayMs);
    }
    // Re-inserted so that the map's order is the order of last failure (the oldest are pruned first).
    map.delete(key);
    map.set(key, bucket);
    prune(map, this.settings.maxEntries, (b) => this.forgotten(b, now));
  }

  private refusal(scope: Scope, waitMs: number): CairnError {
    const seconds = Math.max(1, Math.ceil(waitMs / 1000));
    return new CairnError(ErrorCode.RateLimited, `${MESSAGES[scope]}; try again in ${seconds} second${seconds === 1 ? "" : "s"}.`, {
      retryAfterSeconds: seconds,
      scope,
    });
  }
}

/** User names are matched without regard to case, as the user service keeps them unique. */
function nameKey(username: string): string {
  return username.toLowerCase();
}

function pairKey(name: string, address: string): string {
  return `${name}\n${address}`;
}

/** Keeps a map under `max` entries: drops the expired ones first, then the oldest. */
function prune<V>(map: Map<string, V>, max: number, expired: (value: V) => boolean): void {
  if (map.size <= max) return;
  for (const [key, value] of map) if (expired(value)) map.delete(key);
  for (const key of map.keys()) {
    if (map.size <= max) break;
    map.delete(key);
  }
}
