/**
 * The Upstash REST transport of the RedisClient seam. It speaks the REST protocol that @upstash/redis
 * speaks (same requester shape, base64 replies, read-your-writes token), but keeps the HTTP status, which
 * that client drops: an answer of 5xx (Upstash or a proxy without its Redis) or no answer at all is
 * BrokerUnavailableError, while a Redis error reply (HTTP 400, `ERR …`) stays a plain, permanent Error.
 */
import type { Requester, UpstashRequest, UpstashResponse } from "@upstash/redis";
import { z } from "zod";
import { BrokerUnavailableError } from "../errors.ts";
import type {
  PipelineReply,
  RedisArg,
  RedisClient,
  RedisCommand,
  RedisReply,
  Script,
} from "./types.ts";
import { evalWithFallback } from "./types.ts";

/** Options of the Upstash client. */
export interface UpstashClientOptions {
  /** The REST URL, `UPSTASH_REDIS_REST_URL`. */
  url: string;
  /** The REST token, `UPSTASH_REDIS_REST_TOKEN`. */
  token: string;
  /** Time limit of each HTTP request, retries included; 10 s by default. */
  timeoutMs?: number;
  /** Extra attempts after a network failure (not after an answer); 2 by default. */
  retries?: number;
  /** The fetch to use (tests). */
  fetch?: typeof fetch;
}

interface UpstashAnswer {
  result?: unknown;
  error?: string;
}

const replySchema: z.ZodType<RedisReply> = z.union([
  z.string(),
  z.instanceof(Uint8Array),
  z.number(),
  z.null(),
  z.array(z.lazy(() => replySchema)),
]);

/** HTTP statuses that mean "not now": the service or a proxy in front of it failed, or throttles. */
function unavailableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

function parseReply(result: unknown): RedisReply {
  const parsed = replySchema.safeParse(result);
  if (!parsed.success) throw new BrokerUnavailableError("Cannot read the Upstash reply: bad shape");
  return parsed.data;
}

const textDecoder = new TextDecoder();

/**
 * Decodes an `Upstash-Encoding: base64` reply as @upstash/redis does (a top-level "OK" is plain); with
 * `bytes`, bulk strings become bytes rather than text.
 */
function decode(raw: unknown, bytes: boolean, top = true): unknown {
  if (Array.isArray(raw)) return raw.map((item) => decode(item, bytes, false));
  if (typeof raw !== "string" || (top && raw === "OK")) return raw;
  try {
    const decoded = Uint8Array.fromBase64(raw);
    return bytes ? decoded : textDecoder.decode(decoded);
  } catch {
    return raw;
  }
}

/** A Requester that can also leave the replies' bulk strings as bytes. */
export interface UpstashRequester extends Requester {
  /** As `request`, with bulk strings as bytes (Uint8Array). */
  requestBytes<T>(req: UpstashRequest): Promise<UpstashResponse<T>>;
}

/** A requester for the Upstash REST API that classifies failures by HTTP status. */
export function upstashRequester(options: UpstashClientOptions): UpstashRequester {
  const { url, token, timeoutMs = 10_000, retries = 2, fetch: fetchImpl = fetch } = options;
  const base = url.replace(/\/$/, "");
  let syncToken = "";

  async function attempt(target: string, init: RequestInit, signal: AbortSignal) {
    for (let i = 0;; i++) {
      try {
        return await fetchImpl(target, { ...init, signal });
      } catch (error) {
        if (signal.aborted) {
          throw new BrokerUnavailableError(
            `Cannot reach Upstash: no answer within ${timeoutMs} ms`,
            {
              cause: error,
            },
          );
        }
        if (i >= retries) {
          const reason = error instanceof Error ? error.message : String(error);
          throw new BrokerUnavailableError(`Cannot reach Upstash: ${reason}`, { cause: error });
        }
        await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** i));
      }
    }
  }

  async function request<T>(req: UpstashRequest, bytes = false): Promise<UpstashResponse<T>> {
    const signal = AbortSignal.timeout(timeoutMs);
    const headers: Record<string, string> = {
      Authorization: `Bearer ${token}`,
      "Content-Type": "application/json",
      "Upstash-Encoding": "base64",
      "upstash-sync-token": syncToken,
    };
    const target = [base, ...(req.path ?? [])].join("/");
    const init = { method: "POST", headers, body: JSON.stringify(req.body), cache: "no-store" };
    const response = await attempt(target, init as RequestInit, signal);
    let text: string;
    try {
      text = await response.text();
    } catch (cause) {
      throw new BrokerUnavailableError("Cannot read the Upstash answer: the body broke off", {
        cause,
      });
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const error = (body as UpstashAnswer | undefined)?.error;
    if (unavailableStatus(response.status)) {
      const detail = typeof error === "string" ? `: ${error}` : "";
      throw new BrokerUnavailableError(
        `Cannot reach Redis through Upstash: HTTP ${response.status}${detail}`,
      );
    }
    if (!response.ok) {
      throw new Error(typeof error === "string" ? error : `HTTP ${response.status}`);
    }
    if (body === undefined) {
      throw new BrokerUnavailableError("Cannot read the Upstash answer: it is not JSON");
    }
    syncToken = response.headers.get("upstash-sync-token") ?? syncToken;
    if (Array.isArray(body)) {
      return body.map((slot: UpstashAnswer) => ({
        result: decode(slot?.result, bytes),
        error: slot?.error,
      })) as unknown as UpstashResponse<T>;
    }
    const answer = body as UpstashAnswer;
    return { result: decode(answer.result, bytes) as T, error: answer.error };
  }

  return {
    request: <T>(req: UpstashRequest) => request<T>(req),
    requestBytes: <T>(req: UpstashRequest) => request<T>(req, true),
  };
}

/** Creates a RedisClient that talks to Upstash (or a compatible proxy) over REST. */
export function createUpstashClient(options: UpstashClientOptions): RedisClient {
  const { timeoutMs = 10_000, retries = 2 } = options;
  if (!(timeoutMs > 0)) {
    throw new RangeError("Cannot create the Upstash client: timeoutMs must be > 0");
  }
  if (!(retries >= 0)) {
    throw new RangeError("Cannot create the Upstash client: retries must be >= 0");
  }
  const requester = upstashRequester(options);
  let closed = false;

  async function request(path: string[], body: unknown, bytes = false): Promise<unknown> {
    if (closed) throw new Error("Cannot send a command: the client is closed");
    return await (bytes ? requester.requestBytes : requester.request)({ path, body });
  }

  /** A JSON body carries text only: bytes would not reach Redis as they are. */
  function textual(command: RedisCommand): RedisCommand {
    if (command.some((arg) => typeof arg !== "string")) {
      throw new TypeError("Cannot send bytes over REST: the transport is not binary");
    }
    return command;
  }

  async function send(command: RedisCommand, bytes = false): Promise<RedisReply> {
    const answer = await request([], textual(command), bytes) as UpstashAnswer;
    if (answer.error !== undefined) throw new Error(answer.error);
    return parseReply(answer.result);
  }

  async function pipeline(commands: RedisCommand[]): Promise<PipelineReply[]> {
    if (commands.length === 0) return [];
    const answers = await request(["pipeline"], commands.map(textual));
    if (!Array.isArray(answers) || answers.length !== commands.length) {
      throw new BrokerUnavailableError("Cannot read the Upstash pipeline reply: bad length");
    }
    return answers.map(({ result, error }: UpstashAnswer) =>
      error !== undefined ? new Error(error) : parseReply(result)
    );
  }

  function evalScript(script: Script, keys: string[], args: RedisArg[]): Promise<RedisReply> {
    return evalWithFallback(send, script, { keys, args });
  }

  return {
    binary: false,
    send: (command) => send(command),
    sendBytes: (command) => send(command, true),
    pipeline,
    eval: evalScript,
    blocking: () => null,
    close() {
      closed = true;
      return Promise.resolve();
    },
  };
}
