/** Image bytes: media type sniffing, Retry-After parsing and an SSRF-safe, size-capped download. */
import { PermanentError, RetryableError } from "../errors.ts";

/** The image media types the service accepts and serves. */
export type ImageMime = "image/jpeg" | "image/png" | "image/webp";

/** Options of downloadImage. */
export interface DownloadOptions {
  /** Allowed `host[:port]` entries; http is allowed only for entries that name a port. */
  allowHosts: string[];
  /** Largest accepted body, enforced while streaming. */
  maxBytes: number;
  /** One deadline covering the redirects, the headers and the body. */
  timeoutMs: number;
  /** The fetch to use (tests inject one). */
  fetch?: typeof fetch;
  /** The caller's cancellation; its abort propagates as the signal's reason. */
  signal?: AbortSignal;
}

/** A downloaded image whose type was recognised from its bytes. */
export interface DownloadedImage {
  bytes: Uint8Array;
  mimeType: ImageMime;
}

const MAX_REDIRECTS = 3;
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * Recognises JPEG, PNG and WebP from their magic numbers, or returns null.
 * Hand-written on purpose: this runs synchronously on the hot path for every image, while
 * file-type is async, stream-oriented and far heavier than the three checks needed here.
 */
export function sniffImage(bytes: Uint8Array): ImageMime | null {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    return "image/jpeg";
  }
  if (bytes.length >= 8 && PNG_SIGNATURE.every((byte, i) => bytes[i] === byte)) {
    return "image/png";
  }
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === "RIFF" && ascii(bytes, 8, 12) === "WEBP") {
    return "image/webp";
  }
  return null;
}

function ascii(bytes: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...bytes.subarray(start, end));
}

/**
 * Decodes base64 (null when it is not), keeping the text itself when it is already canonical (padded,
 * no whitespace, no stray bits) rather than encoding the bytes again.
 */
export function decodeBase64(text: string): { bytes: Uint8Array; base64: string } | null {
  try {
    const bytes = Uint8Array.fromBase64(text, { lastChunkHandling: "strict" });
    if (text.length === Math.ceil(bytes.length / 3) * 4) return { bytes, base64: text };
  } catch {
    // Not canonical: the loose decoding below decides.
  }
  try {
    const bytes = Uint8Array.fromBase64(text);
    return { bytes, base64: bytes.toBase64() };
  } catch {
    return null;
  }
}

/** Converts a Retry-After header (delay in seconds or an HTTP date) into milliseconds. */
export function parseRetryAfter(
  value: string | null,
  now: number = Date.now(),
): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/[a-z]/i.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** A deadline merged with an optional caller signal. */
export interface Deadline {
  /** Aborts when the caller aborts or the deadline passes. */
  readonly signal: AbortSignal;
  /** True once the deadline (not the caller) has fired. */
  readonly expired: boolean;
  /** Releases the timer and the caller's listener; call it in a finally. */
  clear(): void;
}

/**
 * Starts a deadline whose timer is released by clear() (unlike AbortSignal.timeout, which lingers).
 * The caller's signal is followed with one listener rather than `AbortSignal.any`, which costs twice
 * as much per request and leaves weak references for the garbage collector.
 */
export function createDeadline(timeoutMs: number, signal?: AbortSignal): Deadline {
  const controller = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    controller.abort(new DOMException("The deadline passed", "TimeoutError"));
  }, timeoutMs);
  const follow = () => controller.abort(signal?.reason);
  if (signal?.aborted) follow();
  else signal?.addEventListener("abort", follow, { once: true });
  return {
    signal: controller.signal,
    get expired() {
      return expired;
    },
    clear: () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", follow);
    },
  };
}

/**
 * Reads a response body up to maxBytes; returns null (and cancels the stream) once it is longer.
 * A body whose Content-Length fits (and that fetch does not decompress) is read whole, Deno's fast
 * path, then checked again; any other is read chunk by chunk and cut off once it grows past the cap.
 */
export async function readLimited(
  response: Response,
  maxBytes: number,
): Promise<Uint8Array | null> {
  const body = response.body;
  if (body === null) return new Uint8Array(0);
  // fetch decompresses: with a Content-Encoding, Content-Length counts the compressed bytes.
  const declared = response.headers.has("content-encoding")
    ? NaN
    : Number(response.headers.get("content-length") ?? NaN);
  if (Number.isInteger(declared) && declared >= 0 && declared <= maxBytes) {
    const bytes = await response.bytes();
    return bytes.length > maxBytes ? null : bytes;
  }
  return await readChunks(body, maxBytes);
}

async function readChunks(
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
): Promise<Uint8Array | null> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        return null;
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

/** Downloads an image from an allowlisted host, following at most three checked redirects. */
export async function downloadImage(
  url: string,
  options: DownloadOptions,
): Promise<DownloadedImage> {
  const { allowHosts, maxBytes, timeoutMs, fetch: fetchFn = fetch, signal } = options;
  if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new RangeError("maxBytes must be >= 1");
  if (!(timeoutMs > 0)) throw new RangeError("timeoutMs must be > 0");
  signal?.throwIfAborted();
  const deadline = createDeadline(timeoutMs, signal);
  try {
    let target = checkUrl(url, allowHosts);
    for (let hop = 0;; hop++) {
      const response = await fetchFn(target, { redirect: "manual", signal: deadline.signal });
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location !== null) {
        await response.body?.cancel();
        if (hop >= MAX_REDIRECTS) {
          throw new PermanentError("Cannot download the image: too many redirects");
        }
        target = checkUrl(resolve(location, target), allowHosts);
        continue;
      }
      return await acceptImage(response, maxBytes);
    }
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    if (error instanceof PermanentError || error instanceof RetryableError) throw error;
    if (deadline.expired) {
      throw new RetryableError(
        `Cannot download the image: no complete answer within ${timeoutMs} ms`,
        {
          cause: error,
        },
      );
    }
    throw new RetryableError(`Cannot download the image: ${describe(error)}`, { cause: error });
  } finally {
    deadline.clear();
  }
}

async function acceptImage(response: Response, maxBytes: number): Promise<DownloadedImage> {
  if (!response.ok) {
    await response.body?.cancel();
    const message = `Cannot download the image: the host answered ${response.status}`;
    if (response.status === 429 || response.status >= 500) {
      const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
      throw new RetryableError(message, { retryAfterMs });
    }
    throw new PermanentError(message);
  }
  const declared = Number(response.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel();
    throw new PermanentError(`Cannot download the image: it is larger than ${maxBytes} bytes`);
  }
  const bytes = await readLimited(response, maxBytes);
  if (bytes === null) {
    throw new PermanentError(`Cannot download the image: it is larger than ${maxBytes} bytes`);
  }
  const mimeType = sniffImage(bytes);
  if (mimeType === null) {
    throw new PermanentError("Cannot accept the download: the bytes are not a JPEG, PNG or WebP");
  }
  return { bytes, mimeType };
}

function resolve(location: string, base: URL): string {
  try {
    return new URL(location, base).href;
  } catch {
    throw new PermanentError("Cannot follow the redirect: the location is not a valid URL");
  }
}

/** Checks a URL against the allowlist; see DownloadOptions.allowHosts for the rules. */
function checkUrl(raw: string, allowHosts: string[]): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new PermanentError("Cannot download the image: the URL is not valid");
  }
  const https = url.protocol === "https:";
  if (!https && url.protocol !== "http:") {
    throw new PermanentError(
      `Cannot download the image: the scheme ${url.protocol} is not allowed`,
    );
  }
  if (url.username !== "" || url.password !== "") {
    throw new PermanentError("Cannot download the image: URLs with credentials are not allowed");
  }
  const port = url.port === "" ? (https ? 443 : 80) : Number(url.port);
  const entries = allowHosts.map(parseEntry).filter((entry) => entry?.host === url.hostname);
  const allowed = entries.some((entry) =>
    entry?.port === undefined ? https && port === 443 : entry.port === port
  );
  if (!allowed) {
    const reason = entries.length > 0 && !https
      ? "needs an allowlist entry naming the port to be fetched over http"
      : "is not in the allowlist";
    throw new PermanentError(`Cannot download the image: the host ${url.host} ${reason}`);
  }
  return url;
}

function parseEntry(entry: string): { host: string; port?: number } | null {
  const match = /^(\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?$/i.exec(entry.trim());
  if (match === null) return null;
  return {
    host: match[1].toLowerCase(),
    port: match[2] === undefined ? undefined : Number(match[2]),
  };
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.length > 200 ? `${message.slice(0, 200)}…` : message;
}
