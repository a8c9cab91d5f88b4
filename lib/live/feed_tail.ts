/**
 * The relay's feed readers: one per partition's feed, each blocking on its own connection, over a
 * blocking broker with N > 1 partitions; otherwise one (over REST, one pipelined poll of every feed per
 * tick, backing off while idle). Each hands every batch it reads on.
 */
import type { Logger } from "@logtape/logtape";
import type { Wakeable } from "../pause.ts";
import type { Broker, FeedItem } from "../queue/types.ts";

/** With wake-ups live, how long an idle reader waits for one (the safety poll wakes it sooner). */
const PUSHED_IDLE_MS = 600_000;
/** Items per feed read (the broker's COUNT): a read that brought fewer reached the end. */
const FULL_BATCH = 1000;

/** What the readers need. */
export interface FeedTailOptions {
  broker: Broker;
  log: Logger;
  blockMs: number;
  /** Longest pause between polls of a non-blocking broker with no subscribers here. */
  idleMaxMs: number;
  /** Stops the readers. */
  signal: AbortSignal;
  /** Polling pauses end early when it is woken (a subscriber arrived). */
  idle: Wakeable;
  /** True while someone here listens: polls are then at most 500 ms apart. */
  busy(): boolean;
  /** True while push wake-ups are live: an idle reader then waits for one (`idle.wake()`), not polls. */
  pushed?(): boolean;
  /**
   * Called with each batch read, in order, and the reader's cursor after it: one partition's feed id
   * (`partition` set), or with one reader over N > 1 feeds their ids joined by commas.
   */
  onItems(items: FeedItem[], cursor: string, partition: number | undefined): void;
  /** Called after a failed read, once its pause is over. */
  onFailure(): void;
}

/** Starts the readers: `ready` once each has its starting cursor, `done` once all have stopped. */
export function tailFeeds(options: FeedTailOptions): { ready: Promise<void>; done: Promise<void> } {
  const { partitions, blocking } = options.broker;
  const split = blocking && partitions > 1;
  const parts = split ? Array.from({ length: partitions }, (_, p) => p) : [undefined];
  const readies = parts.map(() => Promise.withResolvers<void>());
  const done = Promise.all(parts.map((p, i) => run(options, readies[i].resolve, p)));
  return {
    ready: Promise.all(readies.map((r) => r.promise)).then(() => {}),
    done: done.then(() => {}),
  };
}

async function run(o: FeedTailOptions, ready: () => void, partition: number | undefined) {
  let cursor: string | null = null;
  let idleMs = 0;
  let failures = 0;
  while (!o.signal.aborted) {
    try {
      const result = await o.broker.tail(cursor, {
        blockMs: o.blockMs,
        signal: o.signal,
        partition,
      });
      if (cursor === null) ready();
      cursor = result.cursor;
      failures = 0;
      o.onItems(result.items, cursor, partition);
      if (!o.broker.blocking) {
        idleMs = result.items.length > 0 ? 0 : Math.min(Math.max(100, idleMs * 2), o.idleMaxMs);
        const pollMs = o.busy() ? Math.min(idleMs, 500) : idleMs;
        // Pushed: a read short of a full batch reached the end, so the next item comes with a wake-up.
        if (o.pushed?.() && result.items.length < FULL_BATCH) {
          await o.idle.sleep(PUSHED_IDLE_MS, o.signal);
        } else if (idleMs > 0) await o.idle.sleep(pollMs, o.signal);
      }
    } catch (error) {
      failures++;
      o.log.warn("Cannot read the relay feed: {error}", { error: String(error) });
      await o.idle.sleep(Math.min(100 * 2 ** failures, 5_000), o.signal);
      o.onFailure();
    }
  }
  ready();
}
