/** A read that waits on the server (`… BLOCK ms …`) over a dedicated connection, ended at once by abort. */
import type { RedisClient, RedisReply } from "../redis/types.ts";

/**
 * Owns one dedicated connection for one blocking loop (claims, or the relay feed). Over a transport that
 * cannot block (REST), it sends the read without `BLOCK` on the shared client, and callers poll.
 */
export class BlockingReader {
  #client: RedisClient;
  #conn: RedisClient | null | undefined;

  constructor(client: RedisClient) {
    this.#client = client;
  }

  /**
   * Sends `head … BLOCK ms … tail`; returns undefined when `signal` aborted it, which drops the
   * dedicated connection (a new one is opened by the next read) so the abort takes effect at once.
   */
  async read(
    head: string[],
    tail: string[],
    { blockMs, signal }: { blockMs: number; signal?: AbortSignal },
  ): Promise<RedisReply | undefined> {
    if (signal?.aborted) return undefined;
    this.#conn ??= this.#client.blocking();
    const conn = this.#conn;
    if (!conn) return await this.#client.send([...head, ...tail]);
    const command = [...head, "BLOCK", String(blockMs), ...tail];
    if (!signal) return await conn.send(command);
    const onAbort = () => {
      if (this.#conn === conn) this.#conn = undefined;
      void conn.close();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await conn.send(command);
    } catch (error) {
      if (signal.aborted) return undefined;
      throw error;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** Closes the dedicated connection; idempotent. */
  async close(): Promise<void> {
    const conn = this.#conn;
    this.#conn = undefined;
    await conn?.close();
  }
}
