/** A read that waits on the server (`… BLOCK ms …`) over a dedicated connection, ended at once by abort. */
import { BrokerUnavailableError } from "../errors.ts";
import type { RedisClient, RedisReply } from "../redis/types.ts";

/** How long past `blockMs` a blocking read may go unanswered before its connection counts as dead. */
function graceMs(blockMs: number): number {
  return Math.max(1_000, blockMs);
}

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
   * Sends `head … BLOCK ms … tail` (without BLOCK when blockMs ≤ 0); returns undefined when `signal`
   * aborted it. An abort, or no answer within blockMs plus a grace (a half-open connection, a stalled
   * server), drops the dedicated connection so that the next read opens a new one; the latter rejects
   * with BrokerUnavailableError.
   */
  async read(
    head: string[],
    tail: string[],
    { blockMs, signal }: { blockMs: number; signal?: AbortSignal },
  ): Promise<RedisReply | undefined> {
    if (signal?.aborted) return undefined;
    // BLOCK 0 would wait forever: a read that must not wait goes out plainly, as over REST.
    if (blockMs <= 0) return await this.#client.send([...head, ...tail]);
    this.#conn ??= this.#client.blocking();
    const conn = this.#conn;
    if (!conn) return await this.#client.send([...head, ...tail]);
    const drop = () => {
      if (this.#conn === conn) this.#conn = undefined;
      void conn.close();
    };
    const limitMs = blockMs + graceMs(blockMs);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        drop();
        reject(
          new BrokerUnavailableError(`Cannot read from Redis: no answer within ${limitMs} ms`),
        );
      }, limitMs);
    });
    signal?.addEventListener("abort", drop, { once: true });
    const sent = conn.send([...head, "BLOCK", String(blockMs), ...tail]);
    sent.catch(() => {}); // Settled by the race below; a late rejection after a drop is expected.
    try {
      return await Promise.race([sent, deadline]);
    } catch (error) {
      if (signal?.aborted) return undefined;
      throw error;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", drop);
    }
  }

  /** Closes the dedicated connection; idempotent. */
  async close(): Promise<void> {
    const conn = this.#conn;
    this.#conn = undefined;
    await conn?.close();
  }
}
