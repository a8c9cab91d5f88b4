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

/** Options of startFakeXai. */
export interface FakeXaiOptions {
  /** Delay before every generations answer (default 0). */
  latencyMs?: number;
  /** The kind of image served (default png). */
  image?: "png" | "jpeg" | "webp";
  /** Probability (0..1) that a generations request without an injected fault answers 500 (default 0). */
  failRate?: number;
}

/** The refusal the fake answers, shaped as xAI's errors are (`code` and `error`). */
export const REFUSAL = {
  code: "Client specified an invalid argument",
  error: "Generated image rejected by content moderation.",
};

/** One recorded generations or edits request. */
export interface RecordedRequest {
  /** `/v1/images/generations` or `/v1/images/edits`. */
  path: string;
  body: unknown;
  authorization: string | null;
  at: number;
}

/** A running fake xAI server. */
export interface FakeXai {
  /** API base such as http://127.0.0.1:PORT/v1. */
  readonly url: string;
  /** `127.0.0.1:PORT`, for the download allowlist. */
  readonly host: string;
  /** Generations requests, oldest first (always at least the latest 10,000). */
  readonly requests: RecordedRequest[];
  /** How many generations requests arrived. */
  readonly calls: number;
  /** Generations requests per prompt (every request counted, whatever its answer). */
  readonly callsByPrompt: ReadonlyMap<string, number>;
  /** Generations requests whose client went away before the answer was sent. */
  readonly aborted: number;
  inject(...faults: Fault[]): void;
  setLatency(ms: number): void;
  /** Sets the probability (0..1) of a random 500 answer. */
  setFailRate(rate: number): void;
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

const HTML = new TextEncoder().encode("<!doctype html><html><body>not an image</body></html>");
const NOT_AN_IMAGE = new TextEncoder().encode("these bytes are not an image");
const MAX_RECORDED = 10_000;

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers });
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
  let calls = 0;
  let aborted = 0;
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

  async function generations(request: Request, origin: string, path: string): Promise<Response> {
    calls++;
    const fault = faults.shift();
    const authorization = request.headers.get("authorization");
    const body: unknown = await request.json().catch(() => null);
    const prompt = (body as { prompt?: unknown } | null)?.prompt;
    if (typeof prompt === "string") callsByPrompt.set(prompt, (callsByPrompt.get(prompt) ?? 0) + 1);
    // Count a client that leaves before the answer; the listener goes before Deno's own abort of
    // request.signal after a normal answer (legacy behaviour).
    const onAbort = () => aborted++;
    request.signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await answer(origin, path, fault, body, authorization);
    } finally {
      request.signal.removeEventListener("abort", onAbort);
    }
  }

  async function answer(
    origin: string,
    path: string,
    fault: Fault | undefined,
    body: unknown,
    authorization: string | null,
  ): Promise<Response> {
    requests.push({ path, body, authorization, at: Date.now() });
    if (requests.length >= MAX_RECORDED * 2) requests.splice(0, MAX_RECORDED);
    if (!authorization || !/^Bearer \S+$/.test(authorization)) {
      return json(401, { code: "Unauthorized", error: "Incorrect API key provided" });
    }
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
    const problem = path.endsWith("/edits") ? editProblem(input) : null;
    if (problem !== null) {
      return json(400, { code: "Client specified an invalid argument", error: problem });
    }
    const revised_prompt = `revised: ${input.prompt}`;
    const n = typeof input.n === "number" ? input.n : 1;
    if (!Number.isInteger(n) || n < 1 || n > 10) {
      return json(400, { code: "Client specified an invalid argument", error: "n must be 1..10" });
    }
    const moderated = fault && "moderated" in fault ? { respect_moderation: false } : {};
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
      return json(200, { data });
    }
    let name = `${calls}.jpg`;
    if (fault && "html" in fault) name = `html-${calls}.jpg`;
    if (fault && "badBytes" in fault) name = `bad-${calls}.jpg`;
    if (fault && "redirectTo" in fault) {
      name = `redirect-${calls}.jpg`;
      redirects.set(name, fault.redirectTo);
    }
    const url = `${origin}/images/${name}`;
    return json(200, {
      data: Array.from({ length: n }, () => ({ url, revised_prompt, ...moderated })),
    });
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
      if (
        request.method === "POST" &&
        (url.pathname === "/v1/images/generations" || url.pathname === "/v1/images/edits")
      ) {
        return generations(request, url.origin, url.pathname);
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
    close() {
      closing ??= (async () => {
        for (const done of [...waiting]) done();
        await server.shutdown();
      })();
      return closing;
    },
  };
}
