/** The few calls the CLI makes to the image job service, with timeouts and the CLI's errors. */
import { z } from "zod";
import { CliError, EXIT, responseError } from "./errors.ts";

/** Deadline of one ordinary request (answer and body). */
export const REQUEST_TIMEOUT_MS = 30_000;

const submitAnswer = z.object({
  id: z.string().min(1),
  status: z.string(),
  urls: z.object({ events: z.string() }).partial().optional(),
});

/** The part of the submit answer the CLI uses. */
export type SubmitAnswer = z.infer<typeof submitAnswer>;

const jobDocument = z.object({
  id: z.string(),
  status: z.string(),
  error: z.string().optional(),
  result: z.object({
    image: z.string().optional(),
    mime_type: z.string().optional(),
    images: z.array(z.object({ mime_type: z.string(), url: z.string() })).optional(),
  }).optional(),
});

/** The part of `GET /v1/jobs/:id` the CLI uses. */
export type JobDocument = z.infer<typeof jobDocument>;

/** Image bytes and their media type. */
export interface ImageBytes {
  bytes: Uint8Array;
  mimeType: string;
}

/** Options of ApiClient. */
export interface ApiClientOptions {
  /** Base URL without a trailing slash. */
  baseUrl: string;
  token?: string;
  fetch?: typeof fetch;
  timeoutMs?: number;
}

/** A request's own options besides fetch's. */
interface CallOptions extends RequestInit {
  /** Send the bearer token (default true). */
  bearer?: boolean;
  /** Only the answer's headers are awaited under the deadline (streams). */
  headersOnly?: boolean;
}

/** Reads a JSON body against `schema`, failing as a broken service would. */
async function parsed<T>(response: Response, schema: z.ZodType<T>, action: string): Promise<T> {
  const result = schema.safeParse(await response.json().catch(() => undefined));
  if (!result.success) {
    throw new CliError(
      EXIT.unreachable,
      `Cannot ${action}: the answer is not what the API promises`,
    );
  }
  return result.data;
}

/** A client of the service's HTTP API for one base URL and token. */
export class ApiClient {
  readonly baseUrl: string;
  token: string | undefined;
  #fetch: typeof fetch;
  #timeoutMs: number;

  constructor(
    { baseUrl, token, fetch: f = fetch, timeoutMs = REQUEST_TIMEOUT_MS }: ApiClientOptions,
  ) {
    this.baseUrl = baseUrl;
    this.token = token;
    this.#fetch = f;
    this.#timeoutMs = timeoutMs;
  }

  /** Asks a DEV_MODE service for a token (404 means it is not in dev mode). */
  async devToken(): Promise<string> {
    const action = "get a dev token";
    const res = await this.#call(action, "/v1/dev/token", {
      method: "POST",
      bearer: false,
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    if (res.status === 404) {
      await res.body?.cancel();
      throw new CliError(
        EXIT.auth,
        `Cannot get a token: the service at ${this.baseUrl} is not in dev mode ` +
          "(POST /v1/dev/token answered 404); pass --token JWT or set IMAGE_JOBS_TOKEN",
      );
    }
    if (!res.ok) throw await responseError(res, action);
    return (await parsed(res, z.object({ token: z.string().min(1) }), action)).token;
  }

  /** Submits a job (`POST /v1/images`). */
  async submit(
    body: { prompt: string; aspect_ratio?: string; n?: number; images?: string[] },
  ): Promise<SubmitAnswer> {
    const action = "submit the job";
    const res = await this.#call(action, "/v1/images", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw await responseError(res, action);
    return await parsed(res, submitAnswer, action);
  }

  /** Reads a job's status (`GET /v1/jobs/:id`). */
  async job(id: string, signal?: AbortSignal): Promise<JobDocument> {
    const action = "read the job";
    const res = await this.#call(action, `/v1/jobs/${encodeURIComponent(id)}`, { signal });
    if (!res.ok) throw await responseError(res, action);
    return await parsed(res, jobDocument, action);
  }

  /** Cancels a job (`DELETE /v1/jobs/:id`): true when canceled, false when it had already ended. */
  async cancel(id: string, signal?: AbortSignal): Promise<boolean> {
    const action = "cancel the job";
    const res = await this.#call(action, `/v1/jobs/${encodeURIComponent(id)}`, {
      method: "DELETE",
      signal,
    });
    await res.body?.cancel();
    if (res.status === 409) return false;
    if (!res.ok) throw await responseError(res, action);
    return true;
  }

  /**
   * The image bytes (`GET /v1/jobs/:id/image`, or `/images/:index` with an index), or null when the
   * service has no such route.
   */
  async image(id: string, signal?: AbortSignal, index?: number): Promise<ImageBytes | null> {
    const action = "download the image";
    const tail = index === undefined ? "image" : `images/${index}`;
    const res = await this.#call(action, `/v1/jobs/${encodeURIComponent(id)}/${tail}`, { signal });
    if (res.status === 404 || res.status === 405) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) throw await responseError(res, action);
    const mimeType = res.headers.get("content-type")?.split(";")[0].trim() ?? "";
    return { bytes: new Uint8Array(await res.arrayBuffer()), mimeType };
  }

  /** Opens an event stream: `path` with its ticket, or bearer auth; the caller reads the body. */
  events(
    path: string,
    { lastEventId, bearer, signal }: {
      lastEventId?: string;
      bearer: boolean;
      signal?: AbortSignal;
    },
  ): Promise<Response> {
    const headers: Record<string, string> = { Accept: "text/event-stream" };
    if (lastEventId !== undefined) headers["Last-Event-ID"] = lastEventId;
    return this.#call("follow the job", path, { headers, bearer, signal, headersOnly: true });
  }

  /** One request under the deadline; a failure to connect becomes an `unreachable` CliError. */
  async #call(action: string, path: string, options: CallOptions): Promise<Response> {
    const { bearer = true, headersOnly = false, signal, ...init } = options;
    const headers = new Headers(init.headers);
    if (bearer && this.token) headers.set("Authorization", `Bearer ${this.token}`);
    const url = /^https?:/.test(path) ? path : `${this.baseUrl}${path}`;
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new DOMException("deadline", "TimeoutError")),
      this.#timeoutMs,
    );
    const signals = signal ? [deadline.signal, signal] : [deadline.signal];
    try {
      const res = await this.#fetch(url, { ...init, headers, signal: AbortSignal.any(signals) });
      if (headersOnly) return res;
      // The body is read under the same deadline, then handed over from memory.
      const bytes = await res.arrayBuffer();
      const { status, statusText } = res;
      return new Response(bytes.byteLength ? bytes : null, {
        status,
        statusText,
        headers: res.headers,
      });
    } catch (error) {
      throw this.#networkError(action, error, signal);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The error to throw for a failed fetch: the caller's abort as it is, anything else unreachable. */
  #networkError(action: string, error: unknown, signal?: AbortSignal | null): unknown {
    if (signal?.aborted) return signal.reason ?? error;
    const timedOut = error instanceof DOMException && error.name === "TimeoutError";
    const reason = timedOut
      ? `no answer within ${this.#timeoutMs} ms`
      : error instanceof Error
      ? error.message
      : String(error);
    return new CliError(
      EXIT.unreachable,
      `Cannot ${action}: the service at ${this.baseUrl} is unreachable (${reason})`,
      { cause: error },
    );
  }
}
