/** A fake xAI images API on 127.0.0.1 for tests and benchmarks, with injectable faults. */

/** A fault consumed by one generations or edits request (queued in order). */
export type Fault =
  | { status: 500 }
  /** A content-policy refusal: 400 with the moderation's message, as xAI answers one. */
  | { refuse: true }
  /** A 200 whose every image xAI's moderation withheld (`respect_moderation: false`). */
  | { moderated: true }
  | { status: 429; retryAfter?: string }
  | { status: 400; message?: string }
  | { delayMs: number }
  | { badBytes: true }
  | { html: true }
  | { hang: true }
  | { redirectTo: string };

/** A provider-wide token bucket, as xAI limits a key's requests per second. */
export interface RateLimit {
  /** Tokens added per second (> 0). */
  rps: number;
  /** Bucket size, the calls that may arrive at once (default rps, at least 1). */
  burst?: number;
  /** Whether answers carry `x-ratelimit-*-requests` headers (default false; see rateHeaders). */
  headers?: boolean;
}

/** Options of startFakeXai. */
export interface FakeXaiOptions {
  /** Delay before every generations answer (default 0). */
  latencyMs?: number;
  /** The kind of image served (default png). */
  image?: "png" | "jpeg" | "webp";
  /** Probability (0..1) that a generations request without an injected fault answers 500 (default 0). */
  failRate?: number;
  /** Requests per second the fake takes; over it, 429 with Retry-After at arrival (default none). */
  rateLimit?: RateLimit;
  /** `usage.cost_in_usd_ticks` of one image (default 200,000,000: $0.02; 10^10 ticks = $1). */
  costTicksPerImage?: number;
}

/** The refusal the fake answers, shaped as xAI's errors are (`code` and `error`). */
export const REFUSAL = {
  code: "Client specified an invalid argument",
  error: "Generated image rejected by content moderation.",
};

/** One recorded generations (or edits) request. */
export interface RecordedRequest {
  /** `/v1/images/generations` or `/v1/images/edits`. */
  path: string;
  body: unknown;
  authorization: string | null;
  at: number;
  /** Which endpoint it called. */
  endpoint: "generations" | "edits";
}

/** A running fake xAI server. */
export interface FakeXai {
  /** API base such as http://127.0.0.1:PORT/v1. */
  readonly url: string;
  /** `127.0.0.1:PORT`, for the download allowlist. */
  readonly host: string;
  /** Generations and edits requests, oldest first (always at least the latest 10,000). */
  readonly requests: RecordedRequest[];
  /** How many generations and edits requests arrived, whatever their answer. */
  readonly calls: number;
  /** Generations requests per prompt (every request counted, whatever its answer). */
  readonly callsByPrompt: ReadonlyMap<string, number>;
  /** Generations requests whose client went away before the answer was sent. */
  readonly aborted: number;
  /** Generations and edits requests answered 200. */
  readonly accepted: number;
  /** 429 answers sent, by the rate limit or injected. */
  readonly rateLimited: number;
  /** Arrival times (epoch ms, fractional) of the requests answered 200, for maxInWindow. */
  readonly acceptedAt: readonly number[];
  inject(...faults: Fault[]): void;
  setLatency(ms: number): void;
  /** Sets the probability (0..1) of a random 500 answer. */
  setFailRate(rate: number): void;
  /** Sets (with a full bucket) or, with null, removes the rate limit. */
  setRateLimit(limit: RateLimit | null): void;
  /** Sets `usage.cost_in_usd_ticks` of one image. */
  setCostTicksPerImage(ticks: number): void;
  close(): Promise<void>;
}

/** Tiny real 8x8 images (made with cjpeg, cwebp and zlib). */
const IMAGES = {
  jpeg:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/2wBDAQkJCQwLDBgNDRgyIRwhMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjL/wAARCAAIAAgDASIAAhEBAxEB/8QAFQABAQAAAAAAAAAAAAAAAAAAAAT/xAAXEAEBAQEAAAAAAAAAAAAAAAAABSIy/8QAFQEBAQAAAAAAAAAAAAAAAAAAAwT/xAAbEQAABwEAAAAAAAAAAAAAAAAAAQMEBRMhFP/aAAwDAQACEQMRAD8AtmROcgJpFwpeehId0rylo//Z",
  png:
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAkElEQVR42g3MoREEIAwEwC/n26CNdIDGoN9gTkdjzqBPx8TQQdp59M7s52u3WZhp2IFtmoeh7Pf59tt6WNfoB32ze3RUfzBvm2FTYx7MzekxUfPBum2FLY11sDaXx0KtB37ba13DD3zTPRzlD3gbw6jBA27Sgyg+0G0Kk4YOtCkPofQgb8uw1MiD3EyPROXvD02AbMFoFipmAAAAAElFTkSuQmCC",
  webp:
    "UklGRkIAAABXRUJQVlA4IDYAAADQAQCdASoIAAgAAgA0JaACdAD0rsa2AAD+rDNlRCXxcq5LNm48Bz90rM7L/I78Q8gfO/sqIAA=",
} as const;

const HTML = new TextEncoder().encode("<!doctype html><html><body>not an image</body></html>");
const NOT_AN_IMAGE = new TextEncoder().encode("these bytes are not an image");
const MAX_RECORDED = 10_000;
const BEARER = /^Bearer \S+$/;
/** xAI's price of one grok-imagine-image image, in ticks (10^10 ticks = 1 USD). */
const DEFAULT_COST_TICKS = 200_000_000;
/**
 * xAI's 429 body. xAI's errors are `{code, error}` with gRPC-style codes (400 reads "Client specified an
 * invalid argument"); the exact 429 wording is not documented, so this one is a likely reading.
 */
const RATE_LIMITED_CODE = "Some resource has been exhausted";

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers });
}

/** Most timestamps within any window of windowMs (`[t, t + windowMs)`), e.g. calls in any 1 s. */
export function maxInWindow(timestamps: readonly number[], windowMs: number): number {
  if (!(windowMs > 0)) throw new RangeError("Cannot count a window: windowMs must be > 0");
  const sorted = [...timestamps].sort((a, b) => a - b);
  let best = 0;
  for (let start = 0, end = 0; end < sorted.length; end++) {
    while (sorted[end] - sorted[start] >= windowMs) start++;
    best = Math.max(best, end - start + 1);
  }
  return best;
}

/** A token bucket over performance.now(); take() answers 0 or the ms until a token. */
class Bucket {
  readonly limit: Required<RateLimit>;
  #tokens: number;
  #at = performance.now();

  constructor({ rps, burst, headers = false }: RateLimit) {
    if (!(rps > 0 && Number.isFinite(rps))) {
      throw new RangeError("Cannot set the rate limit: rps must be > 0");
    }
    if (burst !== undefined && !(burst > 0)) {
      throw new RangeError("Cannot set the rate limit: burst must be > 0");
    }
    this.limit = { rps, burst: Math.max(1, burst ?? rps), headers };
    this.#tokens = this.limit.burst;
  }

  #refill(): void {
    const now = performance.now();
    this.#tokens = Math.min(
      this.limit.burst,
      this.#tokens + (now - this.#at) / 1000 * this.limit.rps,
    );
    this.#at = now;
  }

  take(): number {
    this.#refill();
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return (1 - this.#tokens) / this.limit.rps * 1000;
  }

  /**
   * OpenAI-style headers (limit, remaining, time to a full bucket). xAI's documentation names no
   * rate-limit headers besides Retry-After, so these are unverified and sent only with `headers: true`.
   */
  headers(): Record<string, string> {
    if (!this.limit.headers) return {};
    this.#refill();
    const toFull = (this.limit.burst - this.#tokens) / this.limit.rps;
    return {
      "x-ratelimit-limit-requests": String(this.limit.rps),
      "x-ratelimit-remaining-requests": String(Math.floor(this.#tokens)),
      "x-ratelimit-reset-requests": `${Math.round(toFull * 1000) / 1000}s`,
    };
  }
}

function checkedTicks(ticks: number): number {
  if (!(Number.isSafeInteger(ticks) && ticks >= 0)) {
    throw new RangeError("Cannot set the cost: ticks must be a whole number >= 0");
  }
  return ticks;
}

/** Images asked for: a whole `n` from 1 to 10, else 1. */
/** The images after the first of an answer with n > 1, in turn. */
const OTHERS = [IMAGES.jpeg, IMAGES.webp, IMAGES.png];

/**
 * What is wrong with an edits body, as xAI would say it, or null: `image` ({url, type}) or `images`
 * (1 to 3 of them), not both, each URL a data URI or an https URL.
 */
function editProblem(input: Record<string, unknown>): string | null {
  const single = input.image;
  const several = input.images;
  if ((single === undefined) === (several === undefined)) return "give one of image or images";
  const list = single !== undefined ? [single] : several;
  if (!Array.isArray(list) || list.length < 1 || list.length > 3) return "images: 1 to 3";
  for (const item of list) {
    const { url, type } = (item ?? {}) as { url?: unknown; type?: unknown };
    if (type !== "image_url") return "each image needs type image_url";
    if (typeof url !== "string" || !/^(data:image\/(jpeg|png|webp);base64,|https:\/\/)/.test(url)) {
      return "each image url must be a data URI or an https URL";
    }
  }
  return null;
}

function imageCount(body: unknown): number {
  const n = (body as { n?: unknown } | null)?.n;
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 10 ? n : 1;
}

function checkedRate(rate: number): number {
  if (!(rate >= 0 && rate <= 1)) {
    throw new RangeError("Cannot set the fail rate: it must be within 0..1");
  }
  return rate;
}

/** Starts the fake on a free port; stop it with close() in a finally. */
export async function startFakeXai(options: FakeXaiOptions = {}): Promise<FakeXai> {
  const imageBase64: string = IMAGES[options.image ?? "png"];
  const imageBytes = Uint8Array.fromBase64(imageBase64);
  let latencyMs = options.latencyMs ?? 0;
  let failRate = checkedRate(options.failRate ?? 0);
  const faults: Fault[] = [];
  const requests: RecordedRequest[] = [];
  const redirects = new Map<string, string>();
  const waiting = new Set<() => void>();
  let bucket = options.rateLimit ? new Bucket(options.rateLimit) : undefined;
  let costTicksPerImage = checkedTicks(options.costTicksPerImage ?? DEFAULT_COST_TICKS);
  const acceptedAt: number[] = [];
  let calls = 0;
  let aborted = 0;
  let accepted = 0;
  let rateLimited = 0;
  const callsByPrompt = new Map<string, number>();
  let closing: Promise<void> | undefined;

  /** Waits ms (forever when Infinity), ending early when the fake closes. */
  function wait(ms: number): Promise<void> {
    if (ms <= 0 || closing) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        waiting.delete(done);
        resolve();
      };
      const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
      waiting.add(done);
    });
  }

  async function generations(
    request: Request,
    origin: string,
    endpoint: RecordedRequest["endpoint"],
  ): Promise<Response> {
    calls++;
    const arrivedAt = performance.timeOrigin + performance.now();
    const authorization = request.headers.get("authorization");
    // The gateway's limit applies at arrival, to authenticated calls, before any work or latency.
    const limitedMs = bucket && authorization && BEARER.test(authorization) ? bucket.take() : 0;
    const fault = limitedMs > 0 ? undefined : faults.shift();
    const body: unknown = await request.json().catch(() => null);
    const prompt = (body as { prompt?: unknown } | null)?.prompt;
    if (typeof prompt === "string") callsByPrompt.set(prompt, (callsByPrompt.get(prompt) ?? 0) + 1);
    // Count a client that leaves before the answer; the listener goes before Deno's own abort of
    // request.signal after a normal answer (legacy behaviour).
    const onAbort = () => aborted++;
    request.signal.addEventListener("abort", onAbort, { once: true });
    try {
      const response = await answer({ origin, fault, body, authorization, endpoint, limitedMs });
      if (response.status === 200) {
        accepted++;
        acceptedAt.push(arrivedAt);
      } else if (response.status === 429) rateLimited++;
      return response;
    } finally {
      request.signal.removeEventListener("abort", onAbort);
    }
  }

  /** xAI's 429 for an empty bucket: Retry-After in whole seconds, at least 1. */
  function tooMany(limitedMs: number): Response {
    const headers = { "retry-after": String(Math.max(1, Math.ceil(limitedMs / 1000))) };
    const error = `Too many requests: the rate limit of ${bucket?.limit.rps} requests per second ` +
      "for this model was reached";
    return json(429, { code: RATE_LIMITED_CODE, error }, { ...bucket?.headers(), ...headers });
  }

  async function answer(
    { origin, fault, body, authorization, endpoint, limitedMs }: {
      origin: string;
      fault: Fault | undefined;
      body: unknown;
      authorization: string | null;
      endpoint: RecordedRequest["endpoint"];
      limitedMs: number;
    },
  ): Promise<Response> {
    requests.push({
      path: `/v1/images/${endpoint}`,
      body,
      authorization,
      at: Date.now(),
      endpoint,
    });
    if (requests.length >= MAX_RECORDED * 2) requests.splice(0, MAX_RECORDED);
    if (!authorization || !BEARER.test(authorization)) {
      return json(401, { code: "Unauthorized", error: "Incorrect API key provided" });
    }
    if (limitedMs > 0) return tooMany(limitedMs);
    await wait(latencyMs + (fault && "delayMs" in fault ? fault.delayMs : 0));
    if (fault && "hang" in fault) {
      await wait(Infinity);
      return json(503, { code: "Unavailable", error: "The fake is closing" });
    }
    if (closing) return json(503, { code: "Unavailable", error: "The fake is closing" });
    if (!fault && failRate > 0 && Math.random() < failRate) {
      return json(500, { code: "Injected", error: "Injected random 500" });
    }
    if (fault && "refuse" in fault) return json(400, REFUSAL);
    if (fault && "status" in fault) {
      if (fault.status === 400) {
        const error = fault.message ?? "Client specified an invalid argument";
        return json(400, { code: "Client specified an invalid argument", error });
      }
      const headers: Record<string, string> = {};
      if (fault.status === 429 && fault.retryAfter !== undefined) {
        headers["retry-after"] = fault.retryAfter;
      }
      return json(fault.status, { code: "Injected", error: `Injected ${fault.status}` }, headers);
    }
    const input = (typeof body === "object" && body !== null ? body : {}) as Record<
      string,
      unknown
    >;
    if (typeof input.prompt !== "string" || input.prompt.length === 0) {
      return json(400, {
        code: "Client specified an invalid argument",
        error: "prompt is required",
      });
    }
    const problem = endpoint === "edits" ? editProblem(input) : null;
    if (problem !== null) {
      return json(400, { code: "Client specified an invalid argument", error: problem });
    }
    if (input.n !== undefined && imageCount(body) !== input.n) {
      return json(400, { code: "Client specified an invalid argument", error: "n must be 1..10" });
    }
    const n = imageCount(body);
    const moderated = fault && "moderated" in fault ? { respect_moderation: false } : {};
    const usage = { cost_in_usd_ticks: costTicksPerImage * n };
    const revised_prompt = `revised: ${input.prompt}`;
    const headers = bucket?.headers() ?? {};
    if (input.response_format === "b64_json") {
      const b64_json = fault && "badBytes" in fault
        ? NOT_AN_IMAGE.toBase64()
        : fault && "html" in fault
        ? HTML.toBase64()
        : imageBase64;
      // The first image is the configured kind; the others cycle through the three kinds.
      const data = Array.from({ length: n }, (_, k) => ({
        b64_json: k === 0 ? b64_json : OTHERS[(k - 1) % OTHERS.length],
        revised_prompt,
        ...moderated,
      }));
      return json(200, { data, usage }, headers);
    }
    const data = Array.from({ length: n }, (_, i) => {
      const id = i === 0 ? `${calls}` : `${calls}-${i}`;
      let name = `${id}.jpg`;
      if (fault && "html" in fault) name = `html-${id}.jpg`;
      if (fault && "badBytes" in fault) name = `bad-${id}.jpg`;
      if (fault && "redirectTo" in fault) {
        name = `redirect-${id}.jpg`;
        redirects.set(name, fault.redirectTo);
      }
      return { url: `${origin}/images/${name}`, revised_prompt, ...moderated };
    });
    return json(200, { data, usage }, headers);
  }

  /** Serves images labelled image/jpeg whatever they are, as xAI's .jpg URLs do. */
  function image(name: string): Response {
    const headers = { "content-type": "image/jpeg" };
    const target = redirects.get(name);
    if (target !== undefined) {
      return new Response(null, { status: 302, headers: { location: target } });
    }
    if (name.startsWith("html-")) return new Response(HTML, { headers });
    if (name.startsWith("bad-")) return new Response(NOT_AN_IMAGE, { headers });
    return new Response(imageBytes, { headers });
  }

  const listening = Promise.withResolvers<void>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => listening.resolve() },
    (request) => {
      const url = new URL(request.url);
      if (request.method === "POST" && url.pathname === "/v1/images/generations") {
        return generations(request, url.origin, "generations");
      }
      if (request.method === "POST" && url.pathname === "/v1/images/edits") {
        return generations(request, url.origin, "edits");
      }
      if (request.method === "GET" && url.pathname.startsWith("/images/")) {
        return image(url.pathname.slice("/images/".length));
      }
      return json(404, {
        code: "Not found",
        error: `No route for ${request.method} ${url.pathname}`,
      });
    },
  );
  await listening.promise;
  const host = `127.0.0.1:${server.addr.port}`;

  return {
    url: `http://${host}/v1`,
    host,
    get requests() {
      return requests;
    },
    get calls() {
      return calls;
    },
    get callsByPrompt() {
      return callsByPrompt;
    },
    get aborted() {
      return aborted;
    },
    get accepted() {
      return accepted;
    },
    get rateLimited() {
      return rateLimited;
    },
    get acceptedAt() {
      return acceptedAt;
    },
    inject(...more) {
      faults.push(...more);
    },
    setLatency(ms) {
      if (!(ms >= 0)) throw new RangeError("latency must be >= 0");
      latencyMs = ms;
    },
    setFailRate(rate) {
      failRate = checkedRate(rate);
    },
    setRateLimit(limit) {
      bucket = limit ? new Bucket(limit) : undefined;
    },
    setCostTicksPerImage(ticks) {
      costTicksPerImage = checkedTicks(ticks);
    },
    close() {
      closing ??= (async () => {
        for (const done of [...waiting]) done();
        await server.shutdown();
      })();
      return closing;
    },
  };
}
