/**
 * Which addresses a job's report webhook may not reach unless REPORT_WEBHOOK_ALLOW_PRIVATE=true: this machine (loopback,
 * unspecified) and the link-local network (which holds cloud metadata services, 169.254.169.254). A webhook URL is typed by
 * an ADMIN but its requests leave from Cairn's own address: without this rule it is a way to reach Cairn's local services.
 * Checked on the URL as typed (a literal address, `localhost`) and again on the addresses a name resolves to when sending.
 */
import { BlockList, isIP } from "node:net";

export const WEBHOOK_ALLOW_PRIVATE_SETTING = "REPORT_WEBHOOK_ALLOW_PRIVATE";

const RANGES: { network: string; prefix: number; family: "ipv4" | "ipv6"; kind: string }[] = [
  { network: "127.0.0.0", prefix: 8, family: "ipv4", kind: "a loopback address" },
  { network: "0.0.0.0", prefix: 8, family: "ipv4", kind: "an unspecified address" },
  { network: "169.254.0.0", prefix: 16, family: "ipv4", kind: "a link-local address" },
  { network: "::1", prefix: 128, family: "ipv6", kind: "a loopback address" },
  { network: "::", prefix: 128, family: "ipv6", kind: "an unspecified address" },
  { network: "fe80::", prefix: 10, family: "ipv6", kind: "a link-local address" },
  // IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) reach the IPv4 address they map.
  { network: "::ffff:127.0.0.0", prefix: 104, family: "ipv6", kind: "a loopback address" },
  { network: "::ffff:0.0.0.0", prefix: 104, family: "ipv6", kind: "an unspecified address" },
  { network: "::ffff:169.254.0.0", prefix: 112, family: "ipv6", kind: "a link-local address" },
];

const lists = RANGES.map((range) => {
  const list = new BlockList();
  list.addSubnet(range.network, range.prefix, range.family);
  return { list, family: range.family, kind: range.kind };
});

/** What kind of refused address `address` (an IP literal) is, or null when a webhook may reach it. */
export function refusedAddressKind(address: string): string | null {
  const bare = address.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  const version = isIP(bare);
  if (version === 0) return null;
  const family = version === 4 ? "ipv4" : "ipv6";
  return lists.find((entry) => entry.family === family && entry.list.check(bare, family))?.kind ?? null;
}

/**
 * Why a webhook URL's host is refused as typed (null: fine, or a name to check once resolved): a literal refused address,
 * or a name of this machine (`localhost`, `*.localhost`).
 */
export function refusedWebhookHost(url: URL): string | null {
  const host = url.hostname.replace(/\.$/, "").toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost")) return `${host} is this machine`;
  const kind = refusedAddressKind(host);
  return kind ? `${host.replace(/^\[|\]$/g, "")} is ${kind}` : null;
}

/** The words that end every refusal: what to set to allow such a target anyway. */
export const ALLOW_PRIVATE_HINT = `set ${WEBHOOK_ALLOW_PRIVATE_SETTING}=true to allow webhooks to this machine or its link-local network`;

/** What a webhook URL shows to readers: its scheme and host, never its path or query (which usually hold a token). */
export function redactedWebhookUrl(url: string | null): string | null {
  if (!url) return null;
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}/…`;
  } catch {
    return null;
  }
}

export function webhookHost(url: string | null): string | null {
  if (!url) return null;
  try {
    return new URL(url).host;
  } catch {
    return null;
  }
}
