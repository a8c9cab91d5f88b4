/** The Upstash REST transport of the RedisClient seam, built on @upstash/redis. */
import { Redis } from "@upstash/redis";
import { z } from "zod";
import { BrokerUnavailableError } from "../errors.ts";
import type { PipelineReply, RedisClient, RedisCommand, RedisReply, Script } from "./types.ts";

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
}

interface UpstashAnswer {
  result?: unknown;
  error?: string;
}

const replySchema: z.ZodType<RedisReply> = z.union([
  z.string(),
  z.number(),
  z.null(),
  z.array(z.lazy(() => replySchema)),
]);

/** Exposes the requester that @upstash/redis keeps protected, to send raw commands. */
class RawUpstash extends Redis {
  send(path: string[], body: unknown): Promise<unknown> {
    return this.client.request({ path, body });
  }
}

function parseReply(result: unknown): RedisReply {
  const parsed = replySchema.safeParse(result);
  if (!parsed.success) throw new BrokerUnavailableError("Cannot read the Upstash reply: bad shape");
  return parsed.data;
}

/** Maps a failed request: an answer from the server keeps its message, anything else is unreachable. */
function requestError(error: unknown, body: unknown): Error {
  if (error instanceof Error && error.name === "UpstashError") {
    const suffix = `, command was: ${JSON.stringify(body)}`;
    const message = error.message.endsWith(suffix)
      ? error.message.slice(0, -suffix.length)
      : error.message;
    return new Error(message, { cause: error });
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new BrokerUnavailableError(`Cannot reach Upstash: ${reason}`, { cause: error });
}

/** Creates a RedisClient that talks to Upstash (or a compatible proxy) over REST. */
export function createUpstashClient(options: UpstashClientOptions): RedisClient {
  const { url, token, timeoutMs = 10_000, retries = 2 } = options;
  if (!(timeoutMs > 0)) {
    throw new RangeError("Cannot create the Upstash client: timeoutMs must be > 0");
  }
  if (!(retries >= 0)) {
    throw new RangeError("Cannot create the Upstash client: retries must be >= 0");
  }
  const redis = new RawUpstash({
    url,
    token,
    automaticDeserialization: false,
    enableTelemetry: false,
    enableAutoPipelining: false,
    retry: { retries, backoff: (attempt) => 50 * 2 ** attempt },
    signal: () => AbortSignal.timeout(timeoutMs),
  });
  let closed = false;

  async function request(path: string[], body: unknown): Promise<unknown> {
    if (closed) throw new Error("Cannot send a command: the client is closed");
    try {
      return await redis.send(path, body);
    } catch (error) {
      throw requestError(error, body);
    }
  }

  async function send(command: RedisCommand): Promise<RedisReply> {
    const answer = await request([], command) as UpstashAnswer;
    if (answer.error !== undefined) throw new Error(answer.error);
    return parseReply(answer.result);
  }

  async function pipeline(commands: RedisCommand[]): Promise<PipelineReply[]> {
    if (commands.length === 0) return [];
    const answers = await request(["pipeline"], commands);
    if (!Array.isArray(answers) || answers.length !== commands.length) {
      throw new BrokerUnavailableError("Cannot read the Upstash pipeline reply: bad length");
    }
    return answers.map(({ result, error }: UpstashAnswer) =>
      error !== undefined ? new Error(error) : parseReply(result)
    );
  }

  async function evalScript(script: Script, keys: string[], args: string[]): Promise<RedisReply> {
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await send(["EVALSHA", script.sha, ...tail]);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.includes("NOSCRIPT")) throw error;
      return await send(["EVAL", script.source, ...tail]);
    }
  }

  return {
    send,
    pipeline,
    eval: evalScript,
    blocking: () => null,
    close() {
      closed = true;
      return Promise.resolve();
    },
  };
}
