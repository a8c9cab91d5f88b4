/**
 * The relay feeds of the Redis broker: one per partition. A cursor is one stream id for one feed, or,
 * read over every partition at once, the partitions' ids joined by commas.
 */
import { pause } from "../pause.ts";
import type { RedisReply } from "../redis/types.ts";
import { BlockingReader } from "./blocking_reader.ts";
import { compareEventIds } from "../live/notifications.ts";
import { fieldsToObject, parseNotification } from "./redis_codec.ts";
import type { RedisContext } from "./redis_context.ts";
import type { BlockOptions, FeedItem } from "./types.ts";

/** Feed items read per call and feed. */
const COUNT = "1000";
/** How often a read over every feed looks again while it waits (it cannot block on N slots). */
const POLL_MS = 50;
const NEVER = new AbortController().signal;

/** The items of one feed's entries, and the id of the last entry (or `cursor` when none). */
function itemsOf(
  entries: RedisReply[],
  cursor: string,
  partition: number,
): { cursor: string; items: FeedItem[] } {
  const items: FeedItem[] = [];
  for (const entry of entries) {
    const [entryId, raw] = entry as [string, RedisReply];
    cursor = entryId;
    const f = fieldsToObject(raw);
    const n = f.n ? parseNotification(f.n) : null;
    if (!n || !f.j || !f.e) continue;
    const owner = f.o ?? "";
    // Items written before event ids were times have no `p`: their ids were the sequence.
    const previousId = f.p ?? String(Number(f.e) - 1);
    items.push({
      jobId: f.j,
      owner,
      cursor,
      partition,
      eventId: f.e,
      previousId,
      notification: n,
      json: f.n,
    });
  }
  return { cursor, items };
}

const STREAM_ID = /^\d{1,20}-\d{1,20}$/;

/** A field of XINFO STREAM ("0-0" when absent), e.g. `last-generated-id`, the newest id ever. */
function infoField(info: RedisReply, name: string): string {
  if (!Array.isArray(info)) return "0-0";
  for (let i = 0; i + 1 < info.length; i += 2) {
    if (String(info[i]) === name) return String(info[i + 1]);
  }
  return "0-0";
}

/**
 * True when the feed may have dropped items after `cursor`: it has trimmed items (more were ever added
 * than it holds; the feed is only trimmed, never XDELed) and its first item is past the cursor.
 * Conservative: a cursor just before the first kept item also counts (a reset, never a gap).
 */
function trimmedAfter(info: RedisReply, cursor: string): boolean {
  const trimmed = Number(infoField(info, "entries-added")) > Number(infoField(info, "length"));
  const first = infoField(info, "recorded-first-entry-id");
  return trimmed && compareEventIds(cursor, first) < 0;
}

/** Reads the feeds: one blocking reader per partition, or a poll over all of them. */
export class FeedReader {
  #ctx: RedisContext;
  #blocking: boolean;
  #readers: BlockingReader[];

  constructor(ctx: RedisContext, blocking: boolean) {
    this.#ctx = ctx;
    this.#blocking = blocking;
    this.#readers = ctx.all.map(() => new BlockingReader(ctx.client));
  }

  /** Reads the feed of `options.partition` (or, absent with N > 1, of every partition) after `cursor`. */
  async tail(
    cursor: string | null,
    options: BlockOptions,
  ): Promise<{ cursor: string; items: FeedItem[] }> {
    if (options.partition === undefined && this.#ctx.partitions > 1) {
      return await this.#all(cursor, options);
    }
    const p = options.partition ?? 0;
    const feed = this.#ctx.keys.events(p);
    if (cursor === null) {
      return { cursor: await this.#last(feed), items: [] };
    }
    const reply = await this.#readers[p].read(
      ["XREAD", "COUNT", COUNT],
      ["STREAMS", feed, cursor],
      options,
    );
    if (!Array.isArray(reply) || reply.length === 0) return { cursor, items: [] };
    return itemsOf((reply[0] as [string, RedisReply[]])[1], cursor, p);
  }

  async #last(feed: string): Promise<string> {
    const last = await this.#ctx.client.send(["XREVRANGE", feed, "+", "-", "COUNT", "1"]);
    return Array.isArray(last) && last.length > 0 ? String((last[0] as RedisReply[])[0]) : "0-0";
  }

  /** Every partition's feed: one round trip per look (one pipeline over REST), polling while it waits. */
  async #all(cursor: string | null, options: BlockOptions) {
    const feeds = this.#ctx.all.map((p) => this.#ctx.keys.events(p));
    if (cursor === null) {
      const replies = await this.#ctx.spread(
        feeds.map((feed) => ["XREVRANGE", feed, "+", "-", "COUNT", "1"]),
      );
      const ids = replies.map((last) => {
        if (last instanceof Error) throw last;
        return Array.isArray(last) && last.length > 0
          ? String((last[0] as RedisReply[])[0])
          : "0-0";
      });
      return { cursor: ids.join(","), items: [] };
    }
    const ids = cursor.split(",");
    if (ids.length !== feeds.length) {
      throw new RangeError(`Cannot read the feeds: cursor ${cursor} is not theirs`);
    }
    const deadline = Date.now() + Math.max(0, options.blockMs);
    while (true) {
      const replies = await this.#ctx.spread(
        feeds.map((feed, p) => ["XREAD", "COUNT", COUNT, "STREAMS", feed, ids[p]]),
      );
      const items: FeedItem[] = [];
      replies.forEach((reply, p) => {
        if (reply instanceof Error) throw reply;
        if (!Array.isArray(reply) || reply.length === 0) return;
        const read = itemsOf((reply[0] as [string, RedisReply[]])[1], ids[p], p);
        ids[p] = read.cursor;
        items.push(...read.items);
      });
      const left = deadline - Date.now();
      if (items.length > 0 || !this.#blocking || left <= 0 || options.signal?.aborted) {
        return { cursor: ids.join(","), items };
      }
      await pause(Math.min(POLL_MS, left), options.signal ?? NEVER);
    }
  }

  /**
   * Every partition's feed items after the vector `cursor`; null when it is malformed or a feed has
   * trimmed entries after it (Redis keeps the highest trimmed id: `max-deleted-entry-id`).
   */
  async replay(
    cursor: string,
    limit: number,
  ): Promise<{ cursor: string; items: FeedItem[] } | null> {
    const ids = cursor.split(",");
    if (ids.length !== this.#ctx.partitions || !ids.every((id) => STREAM_ID.test(id))) return null;
    const feeds = this.#ctx.all.map((p) => this.#ctx.keys.events(p));
    // The range first, then what the feed trimmed: a trim between the two reads then shows (the
    // client resets). The other order could read a range a trim had already cut, and miss the gap.
    const replies = await this.#ctx.spread(feeds.flatMap((feed, p) => [
      ["XRANGE", feed, `(${ids[p]}`, "+", "COUNT", String(limit)],
      ["XINFO", "STREAM", feed],
    ]));
    const items: FeedItem[] = [];
    for (let p = 0; p < feeds.length; p++) {
      const range = replies[2 * p];
      const info = replies[2 * p + 1];
      if (range instanceof Error) throw range;
      if (!(info instanceof Error)) {
        // Trimmed after the cursor, or a cursor the feed never handed out: the client starts over.
        if (trimmedAfter(info, ids[p])) return null;
        if (compareEventIds(ids[p], infoField(info, "last-generated-id")) > 0) return null;
      } else if (ids[p] !== "0-0") return null;
      const read = itemsOf(range as RedisReply[], ids[p], p);
      ids[p] = read.cursor;
      items.push(...read.items);
    }
    return { cursor: ids.join(","), items };
  }

  /** Closes the dedicated connections. */
  async close(): Promise<void> {
    await Promise.allSettled(this.#readers.map((reader) => reader.close()));
  }
}
