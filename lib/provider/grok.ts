/** The image provider seam: the xAI (Grok) images client and the built-in placeholder provider. */
import { z } from "zod";
import { PermanentError, RateLimitedError, RetryableError } from "../errors.ts";
import {
  createDeadline,
  decodeBase64,
  downloadImage,
  type ImageMime,
  parseRetryAfter,
  readLimited,
  sniffImage,
} from "./images.ts";
import { drawPlaceholder } from "./placeholder.ts";
import { grokCall, type ImageRequest } from "./grok_request.ts";
import { ContentPolicyError, isRefusal } from "./refusal.ts";

export type { ImageRequest };

/** A generated image (the first, when there are several), its media type sniffed from the bytes. */
export interface GeneratedImage {
  base64: string;
  mimeType: ImageMime;
  revisedPrompt?: string;
  /** What the provider said the request cost, in USD ticks (10^10 = 1 USD); 0 when it said nothing. */
  costUsdTicks?: number;
  /** The images after the first, in the provider's order. */
  more?: { base64: string; mimeType: ImageMime }[];
}

/** Per-call options of ImageProvider.generate. */
export interface GenerateOptions {
  /** Cancels the call; the abort propagates as the signal's reason (an AbortError). */
  signal?: AbortSignal;
}

/** Something that turns a prompt into an image; throws RetryableError or PermanentError. */
export interface ImageProvider {
  readonly name: string;
  generate(request: ImageRequest, options?: GenerateOptions): Promise<GeneratedImage>;
}

/** Options of createGrokProvider. */
export interface GrokProviderOptions {
  /** Base URL such as https://api.x.ai/v1. */
  apiBase: string;
  apiKey: string;
  /** Default model, used when the request names none. */
  model: string;
  responseFormat: "b64_json" | "url";
  /** `host[:port]` allowlist for downloads in url mode. */
  imageHosts: string[];
  /** Deadline of the generation request (default 120 s). */
  timeoutMs?: number;
  /** Deadline of the image download in url mode (default 30 s). */
  downloadTimeoutMs?: number;
  /** Largest accepted image (default 20 MiB). */
  maxBytes?: number;
  fetch?: typeof fetch;
}

/**
 * The longest wait a provider's Retry-After may impose on a job: 10 minutes. Rate-limit windows are a
 * minute or so, so an honest answer fits with room to spare, while a bogus one (99999999 s, a date years
 * ahead) cannot park a job for longer than a client would still wait for it, nor reach setTimeout's
 * 2^31-1 ms limit, past which a timer fires at once.
 */
export const MAX_RETRY_AFTER_MS = 10 * 60_000;

/**
 * Reads a Retry-After header (delay seconds or an HTTP date) as a wait in milliseconds within
 * [0, MAX_RETRY_AFTER_MS]; undefined when it is absent or unreadable (negative, not a number, not a date).
 */
export function boundedRetryAfter(
  value: string | null,
  now: number = Date.now(),
): number | undefined {
  const text = value?.trim() ?? "";
  const ms = /^\d+(\.\d+)?$/.test(text) ? Number(text) * 1000 : parseRetryAfter(value, now);
  if (ms === undefined || Number.isNaN(ms)) return undefined;
  return Math.min(Math.max(0, Math.ceil(ms)), MAX_RETRY_AFTER_MS);
}

const ERROR_BODY_BYTES = 16 * 1024;
const decoder = new TextDecoder();
const MESSAGE_CHARS = 300;

const codeSchema = z.union([z.string(), z.number()]).optional();
const errorBodySchema = z.object({
  error: z.union([
    z.string(),
    z.object({ message: z.string(), code: codeSchema, type: z.string().optional() }),
  ]).optional(),
  message: z.string().optional(),
  code: codeSchema,
  type: z.string().optional(),
});

function responseSchema(maxBase64Chars: number) {
  const item = z.object({
    b64_json: z.string().max(maxBase64Chars).optional(),
    url: z.string().max(4096).optional(),
    revised_prompt: z.string().max(10_000).optional(),
    /** false: xAI's moderation withheld this image. */
    respect_moderation: z.boolean().optional(),
  });
  // A cost beyond $1,000,000 for one request is not believed (it would poison every meter): dropped.
  const usage = z.object({
    cost_in_usd_ticks: z.number().int().min(0).max(1e16).optional().catch(undefined),
  });
  return z.object({
    data: z.array(item).min(1).max(10),
    usage: usage.optional().catch(undefined),
  });
}

type ImageItem = z.infer<ReturnType<typeof responseSchema>>["data"][number];
type Answer = { items: ImageItem[]; costUsdTicks: number };

/** Builds the xAI images client (`POST {apiBase}/images/generations`, and `/images/edits`). */
export function createGrokProvider(options: GrokProviderOptions): ImageProvider {
  const {
    apiKey,
    model,
    responseFormat,
    imageHosts,
    timeoutMs = 120_000,
    downloadTimeoutMs = 30_000,
    maxBytes = 20 * 1024 * 1024,
    fetch: fetchFn = fetch,
  } = options;
  if (apiKey.length === 0) throw new RangeError("apiKey must not be empty");
  if (!(timeoutMs > 0) || !(downloadTimeoutMs > 0)) throw new RangeError("timeouts must be > 0");
  if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new RangeError("maxBytes must be >= 1");
  const apiBase = options.apiBase.replace(/\/+$/, "");
  const schema = responseSchema(Math.ceil(maxBytes / 3) * 4);
  const maxBodyBytes = Math.ceil(maxBytes / 3) * 4 + 64 * 1024;
  const redact = (text: string) => text.replaceAll(apiKey, "[redacted]");

  async function call(request: ImageRequest, signal: AbortSignal): Promise<Answer> {
    const { path, body } = grokCall(request, { model, responseFormat });
    const response = await fetchFn(`${apiBase}/${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
    if (!response.ok) throw await statusError(response, redact);
    const bytes = await readLimited(response, maxBodyBytes);
    if (bytes === null) {
      throw new PermanentError(
        `Cannot generate the image: the xAI response exceeds ${maxBodyBytes} bytes`,
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(decoder.decode(bytes));
    } catch {
      throw new PermanentError("Cannot generate the image: the xAI response is not JSON");
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new PermanentError(
        "Cannot generate the image: the xAI response has an unexpected shape",
      );
    }
    return {
      items: parsed.data.data,
      costUsdTicks: parsed.data.usage?.cost_in_usd_ticks ?? 0,
    };
  }

  async function toImage(item: ImageItem, signal?: AbortSignal): Promise<GeneratedImage> {
    const revisedPrompt = item.revised_prompt || undefined;
    if (item.b64_json !== undefined) {
      const decoded = decodeBase64(item.b64_json);
      if (decoded === null) {
        throw new PermanentError("Cannot accept the image: b64_json is not valid base64");
      }
      const mimeType = sniffImage(decoded.bytes);
      if (mimeType === null) {
        throw new PermanentError("Cannot accept the image: the bytes are not a JPEG, PNG or WebP");
      }
      return { base64: decoded.base64, mimeType, revisedPrompt };
    }
    if (item.url !== undefined) {
      const image = await downloadImage(item.url, {
        allowHosts: imageHosts,
        maxBytes,
        timeoutMs: downloadTimeoutMs,
        fetch: fetchFn,
        signal,
      });
      return { base64: image.bytes.toBase64(), mimeType: image.mimeType, revisedPrompt };
    }
    throw new PermanentError(
      "Cannot generate the image: the xAI response has neither b64_json nor url",
    );
  }

  return {
    name: "grok",
    async generate(request, { signal } = {}) {
      signal?.throwIfAborted();
      const deadline = createDeadline(timeoutMs, signal);
      let answer: Answer;
      try {
        answer = await call(request, deadline.signal);
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (error instanceof PermanentError || error instanceof RetryableError) throw error;
        const message = deadline.expired
          ? `no answer from xAI within ${timeoutMs} ms`
          : redact(error instanceof Error ? error.message : String(error)).slice(0, MESSAGE_CHARS);
        throw new RetryableError(`Cannot generate the image: ${message}`, { cause: error });
      } finally {
        deadline.clear();
      }
      // Items xAI's moderation withheld are dropped; with none left the request was refused.
      const costUsdTicks = answer.costUsdTicks;
      const kept = answer.items.filter((item) => item.respect_moderation !== false);
      if (kept.length === 0) {
        throw new ContentPolicyError("Cannot generate the image: xAI's moderation withheld it");
      }
      const [first, ...more] = await Promise.all(kept.map((item) => toImage(item, signal)));
      if (more.length === 0) return { ...first, costUsdTicks };
      const rest = more.map(({ base64, mimeType }) => ({ base64, mimeType }));
      return { ...first, more: rest, costUsdTicks };
    },
  };
}

/** Maps a non-2xx answer to a typed error carrying the status and the provider's (truncated) message. */
async function statusError(
  response: Response,
  redact: (text: string) => string,
): Promise<PermanentError | RetryableError> {
  let text = "";
  try {
    const bytes = await readLimited(response, ERROR_BODY_BYTES);
    text = bytes === null ? "" : decoder.decode(bytes);
  } catch {
    // The status alone is enough to classify the failure.
  }
  let detail = text.trim();
  let code = "";
  try {
    const parsed = errorBodySchema.safeParse(JSON.parse(text));
    if (parsed.success) {
      const { error, message } = parsed.data;
      detail = (typeof error === "string" ? error : error?.message) ?? message ?? detail;
      const nested = typeof error === "object" ? [error.code, error.type] : [];
      code = [parsed.data.code, parsed.data.type, ...nested].filter((v) => v !== undefined)
        .join(" ");
    }
  } catch {
    // Not JSON: keep the raw text.
  }
  const refused = isRefusal(response.status, code, detail);
  detail = redact(detail).replace(/\s+/g, " ").slice(0, MESSAGE_CHARS);
  const message = `Cannot generate the image: xAI answered ${response.status}` +
    (detail ? `: ${detail}` : "");
  if (response.status === 429) {
    return new RateLimitedError(message, {
      retryAfterMs: boundedRetryAfter(response.headers.get("retry-after")),
    });
  }
  if (refused) return new ContentPolicyError(message);
  if (response.status >= 500) {
    return new RetryableError(message, {
      retryAfterMs: boundedRetryAfter(response.headers.get("retry-after")),
    });
  }
  return new PermanentError(message);
}

/** Options of createPlaceholderProvider. */
export interface PlaceholderProviderOptions {
  /** Simulated latency per image (default 0). */
  latencyMs?: number;
}

/** Builds the offline provider that draws a PNG from the prompt (used when no xAI key is set). */
export function createPlaceholderProvider(options: PlaceholderProviderOptions = {}): ImageProvider {
  const { latencyMs = 0 } = options;
  if (!(latencyMs >= 0)) throw new RangeError("latencyMs must be >= 0");
  return {
    name: "placeholder",
    async generate(request, { signal } = {}) {
      signal?.throwIfAborted();
      if (latencyMs > 0) await sleep(latencyMs, signal);
      const size = dimensions(request.aspectRatio);
      const count = request.n ?? 1;
      const images: { base64: string; mimeType: "image/png" }[] = [];
      for (let k = 0; k < count; k++) {
        // Each image of a job is drawn from the prompt and its place, so they differ.
        const png = await drawPlaceholder(
          k === 0 ? request.prompt : `${request.prompt} #${k}`,
          size,
        );
        signal?.throwIfAborted();
        images.push({ base64: png.toBase64(), mimeType: "image/png" });
      }
      const [first, ...more] = images;
      // The placeholder's images are free.
      return more.length === 0
        ? { ...first, costUsdTicks: 0 }
        : { ...first, more, costUsdTicks: 0 };
    },
  };
}

/** Turns "16:9" into a size whose longer side is 256; anything else gives a square. */
function dimensions(aspectRatio: string | undefined): { width: number; height: number } {
  const match = /^(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)$/.exec(aspectRatio ?? "");
  const ratio = match ? Number(match[1]) / Number(match[2]) : 1;
  if (!(ratio > 0) || !Number.isFinite(ratio)) return { width: 256, height: 256 };
  const clamp = (n: number) => Math.max(16, Math.round(n));
  return ratio >= 1 ? { width: 256, height: clamp(256 / ratio) } : {
    width: clamp(256 * ratio),
    height: 256,
  };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
