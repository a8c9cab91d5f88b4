/** The small Redis interface that both transports (TCP and Upstash REST) implement. */

/**
 * A RESP2-shaped reply: bulk strings, integers, nil and nested arrays. Bulk strings are strings, or
 * bytes (Uint8Array) when read with `sendBytes`.
 */
export type RedisReply = string | number | null | Uint8Array | RedisReply[];

/** One argument of a command: text, or raw bytes where the transport is `binary`. */
export type RedisArg = string | Uint8Array;

/** One command: its name then its arguments. */
export type RedisCommand = readonly RedisArg[];

/** A Lua script with its SHA1, so that it can be sent with EVALSHA. */
export interface Script {
  readonly source: string;
  readonly sha: string;
}

/** A reply or an error, per command of a pipeline. */
export type PipelineReply = RedisReply | Error;

/** What every Redis transport offers. Errors from Redis reject with the server's message. */
export interface RedisClient {
  /** True when a command may carry raw bytes (a Uint8Array argument); false over REST (JSON bodies). */
  readonly binary: boolean;
  /** Sends one command. */
  send(command: RedisCommand): Promise<RedisReply>;
  /** Sends one command; its bulk strings come back as bytes (Uint8Array), not decoded as text. */
  sendBytes(command: RedisCommand): Promise<RedisReply>;
  /** Sends commands in one round trip; each slot holds its reply or its error. */
  pipeline(commands: RedisCommand[]): Promise<PipelineReply[]>;
  /** Runs a Lua script (EVALSHA, falling back to EVAL when the script is not cached). */
  eval(script: Script, keys: string[], args: RedisArg[]): Promise<RedisReply>;
  /**
   * Opens a new dedicated connection for blocking reads (one per blocking loop; the caller closes it),
   * or returns null when the transport cannot block (REST).
   */
  blocking(): RedisClient | null;
  /** Closes the connections; idempotent. */
  close(): Promise<void>;
}

const textDecoder = new TextDecoder();

/** A bulk string as text: bytes are decoded as UTF-8, numbers written out, nil read as "". */
export function replyText(reply: RedisReply | undefined): string {
  if (reply instanceof Uint8Array) return textDecoder.decode(reply);
  return reply === null || reply === undefined ? "" : String(reply);
}

/** True for Redis's NOSCRIPT reply: the script is not in the server's cache. */
export function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.includes("NOSCRIPT");
}

/** Runs a script with EVALSHA over `send`, falling back to EVAL when the server lacks it (NOSCRIPT). */
export async function evalWithFallback(
  send: (command: RedisCommand) => Promise<RedisReply>,
  script: Script,
  { keys, args }: { keys: string[]; args: RedisArg[] },
): Promise<RedisReply> {
  const tail = [String(keys.length), ...keys, ...args];
  try {
    return await send(["EVALSHA", script.sha, ...tail]);
  } catch (error) {
    if (!isNoScript(error)) throw error;
    return await send(["EVAL", script.source, ...tail]);
  }
}

/** Computes a script's SHA1 so that it can be sent with EVALSHA. */
export async function defineScript(source: string): Promise<Script> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(source));
  const sha = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  return { source, sha };
}
