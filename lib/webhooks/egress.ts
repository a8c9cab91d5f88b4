/**
 * Where a webhook may be sent: the submit-time check of its URL, and the delivery-time check that
 * resolves the host and pins the address that passed (so a DNS answer cannot change in between).
 */
import { isLocalhostName, isPrivateAddress } from "./addresses.ts";

/** Longest webhook URL accepted. */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

/** Where one delivery goes: the URL, and the address the connection must use. */
export interface WebhookTarget {
  url: URL;
  /** The checked IP address to connect to, or the host name itself for a WEBHOOK_HOSTS entry. */
  address: string;
  port: number;
  tls: boolean;
}

/** What the delivery-time check found: a pinned target, a refusal (final), or a failed lookup (retry). */
export type TargetCheck =
  | { ok: true; target: WebhookTarget }
  | { ok: false; refused: true; reason: string }
  | { ok: false; refused: false; reason: string };

/** Looks up the A or AAAA records of a name (Deno.resolveDns by default; tests inject one). */
export type ResolveDns = (name: string, type: "A" | "AAAA") => Promise<string[]>;

interface AllowEntry {
  host: string;
  port?: number;
}

/** Parses WEBHOOK_HOSTS entries (`host[:port]`) into canonical hosts, as URL spells them. */
function parseEntries(allowedHosts: readonly string[]): AllowEntry[] {
  const entries: AllowEntry[] = [];
  for (const raw of allowedHosts) {
    const match = /^(\[[0-9a-f:.]+\]|[^:\[\]\s]+)(?::(\d{1,5}))?$/i.exec(raw.trim());
    if (match === null) continue;
    try {
      const host = new URL(`http://${match[1]}/`).hostname;
      entries.push({ host, port: match[2] === undefined ? undefined : Number(match[2]) });
    } catch {
      // not a host: it allows nothing
    }
  }
  return entries;
}

function defaultPort(url: URL): number {
  return url.protocol === "https:" ? 443 : 80;
}

/**
 * Whether WEBHOOK_HOSTS lists the URL's host: an entry `host:port` allows that port, an entry `host`
 * alone the scheme's default port (80 or 443), as IMAGE_HOSTS entries name ports in lib/provider.
 */
export function isListedHost(url: URL, allowedHosts: readonly string[]): boolean {
  const port = url.port === "" ? defaultPort(url) : Number(url.port);
  return parseEntries(allowedHosts).some((entry) =>
    entry.host === url.hostname && (entry.port ?? defaultPort(url)) === port
  );
}

/** Whether a URL host (a name or a bracketed or plain IP literal) means a non-public address. */
function isInternalHost(hostname: string): boolean {
  return isLocalhostName(hostname) || isPrivateAddress(hostname) === true;
}

/**
 * Why a webhook URL cannot be accepted at submit time, as a user-facing reason to put after
 * "Cannot accept the webhook: " (e.g. "the URL contains credentials"), or null when it can be:
 * an absolute http(s) URL of at most 2048 characters, without credentials, whose host is not a
 * literal loopback, private, link-local, unspecified or multicast address (nor `localhost`) unless
 * WEBHOOK_HOSTS lists it. Host names are checked again, resolved, at delivery.
 */
export function webhookUrlProblem(url: string, allowedHosts: readonly string[]): string | null {
  if (url.length > MAX_WEBHOOK_URL_LENGTH) {
    return `the URL is longer than ${MAX_WEBHOOK_URL_LENGTH} characters`;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "it is not an absolute http or https URL";
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return "it is not an absolute http or https URL";
  }
  if (parsed.username !== "" || parsed.password !== "") {
    return "the URL contains credentials";
  }
  if (parsed.hostname === "") return "the URL has no host";
  if (isInternalHost(parsed.hostname) && !isListedHost(parsed, allowedHosts)) {
    return "its host is a loopback, private or link-local address";
  }
  return null;
}

function unbracket(host: string): string {
  return host.startsWith("[") ? host.slice(1, -1) : host;
}

async function lookup(name: string, resolveDns: ResolveDns): Promise<string[]> {
  const answers = await Promise.allSettled([resolveDns(name, "A"), resolveDns(name, "AAAA")]);
  const [v4, v6] = answers.map((answer) => answer.status === "fulfilled" ? answer.value : []);
  // IPv4 first: a single address is used, and most receivers listen on IPv4.
  return [...v4, ...v6];
}

function defaultResolveDns(name: string, type: "A" | "AAAA"): Promise<string[]> {
  return Deno.resolveDns(name, type);
}

/**
 * The delivery-time check: the URL passes webhookUrlProblem, and unless WEBHOOK_HOSTS lists its host,
 * every address the host resolves to (A and AAAA) is public; the first of them is the one to
 * connect to. A listed host is connected to by name (the system resolver, /etc/hosts included).
 */
export async function checkWebhookTarget(
  url: string,
  allowedHosts: readonly string[],
  { resolveDns = defaultResolveDns }: { resolveDns?: ResolveDns } = {},
): Promise<TargetCheck> {
  const problem = webhookUrlProblem(url, allowedHosts);
  if (problem !== null) return { ok: false, refused: true, reason: problem };
  const parsed = new URL(url);
  const port = parsed.port === "" ? defaultPort(parsed) : Number(parsed.port);
  const tls = parsed.protocol === "https:";
  const host = parsed.hostname;
  if (isListedHost(parsed, allowedHosts)) {
    const address = isLocalhostName(host) ? "127.0.0.1" : unbracket(host);
    return { ok: true, target: { url: parsed, address, port, tls } };
  }
  if (isPrivateAddress(host) === false) {
    return { ok: true, target: { url: parsed, address: unbracket(host), port, tls } };
  }
  const addresses = await lookup(host, resolveDns);
  if (addresses.length === 0) {
    return { ok: false, refused: false, reason: `the host ${host} does not resolve` };
  }
  const internal = addresses.find((address) => isPrivateAddress(address) !== false);
  if (internal !== undefined) {
    return {
      ok: false,
      refused: true,
      reason: `${host} resolves to the non-public address ${internal}`,
    };
  }
  return { ok: true, target: { url: parsed, address: addresses[0], port, tls } };
}
