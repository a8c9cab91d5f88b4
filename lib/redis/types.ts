/** The small Redis interface that both transports (TCP and Upstash REST) implement. */

/** A RESP2-shaped reply: bulk strings, integers, nil and nested arrays. */
export type RedisReply = string | number | null | RedisReply[];

/** One command: its name then its arguments, all strings. */
export type RedisCommand = readonly string[];

/** A Lua script with its SHA1, so that it can be sent with EVALSHA. */
export interface Script {
  readonly source: string;
  readonly sha: string;
}

/** A reply or an error, per command of a pipeline. */
export type PipelineReply = RedisReply | Error;

/** What every Redis transport offers. Errors from Redis reject with the server's message. */
export interface RedisClient {
  /** Sends one command. */
  send(command: RedisCommand): Promise<RedisReply>;
  /** Sends commands in one round trip; each slot holds its reply or its error. */
  pipeline(commands: RedisCommand[]): Promise<PipelineReply[]>;
  /** Runs a Lua script (EVALSHA, falling back to EVAL when the script is not cached). */
  eval(script: Script, keys: string[], args: string[]): Promise<RedisReply>;
  /**
   * Opens a new dedicated connection for blocking reads (one per blocking loop; the caller closes it),
   * or returns null when the transport cannot block (REST).
   */
  blocking(): RedisClient | null;
  /** Closes the connections; idempotent. */
  close(): Promise<void>;
}

/** Computes a script's SHA1 so that it can be sent with EVALSHA. */
export async function defineScript(source: string): Promise<Script> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(source));
  const sha = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  return { source, sha };
}
