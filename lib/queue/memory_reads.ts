/**
 * The read side of the in-memory broker (memory.ts holds the writes): the parts it is made of, and
 * every question a route or the relay asks of it.
 */
// The Broker interface is asynchronous; this implementation answers synchronously.
// deno-lint-ignore-file require-await
import { isEventId, type StoredEvent } from "../live/notifications.ts";
import { MemoryStore } from "./memory_store.ts";
import { EntryQueue } from "./memory_stream.ts";
import { MemoryOutbox } from "./memory_webhooks.ts";
import { MemoryTurns } from "./memory_turns.ts";
import type {
  BlockOptions,
  FeedItem,
  JobPage,
  JobView,
  ListOptions,
  WebhookOutbox,
} from "./types.ts";

/** Options of the in-memory broker. */
export interface MemoryBrokerOptions {
  /** Seconds a job, its image and its events live after the job ended (default one day). */
  ttlSec?: number;
  /** Clock in epoch milliseconds (tests pass a fake one). */
  now?: () => number;
  /** Provider requests/s (0: learned from 429s; null or absent: never paced). */
  pace?: number | null;
  /** Keeps a Socket.IO notice of each job end in `notices` (the bridge is on). */
  notices?: boolean;
}

const TAIL_COUNT = 1_000;

/** The jobs, their entries and their turns, and the reads of them. */
export class MemoryReads {
  protected readonly store: MemoryStore;
  protected readonly queue: EntryQueue;
  protected readonly turns: MemoryTurns;
  #secrets = new Map<string, string>();

  constructor(
    { ttlSec = 86_400, now = Date.now, pace = null, notices = false }: MemoryBrokerOptions = {},
  ) {
    if (!(ttlSec > 0)) throw new RangeError("Cannot create the broker: ttlSec must be positive");
    this.store = new MemoryStore(ttlSec * 1000, now);
    if (notices) this.store.notices = new MemoryOutbox(() => {});
    this.queue = new EntryQueue(() => this.store.wake());
    this.turns = new MemoryTurns({
      pace,
      wake: () => this.store.wake(),
      queue: this.queue,
      nextEntry: () => this.store.nextId(),
      now: () => this.store.now(),
    });
  }

  async get(id: string, options: { image?: boolean } = {}): Promise<JobView | null> {
    const job = this.store.job(id);
    if (!job) return null;
    const view: JobView = { ...job.record };
    if (options.image && view.status === "succeeded" && job.image !== undefined) {
      view.image = job.image;
    }
    return view;
  }

  async image(id: string): Promise<string | null> {
    return this.store.job(id)?.image ?? null;
  }

  async imageAt(id: string, index: number): Promise<string | null> {
    const job = this.store.job(id);
    if (!job || job.record.status !== "succeeded") return null;
    return (index === 0 ? job.image : job.more?.[index - 1]) ?? null;
  }

  async references(id: string): Promise<string[]> {
    return [...this.store.job(id)?.references ?? []];
  }

  get pace(): number | null {
    return this.turns.pace;
  }

  async history(id: string): Promise<{ owner: string; events: StoredEvent[] } | null> {
    const job = this.store.job(id);
    return job ? { owner: job.record.owner, events: await this.events(id) } : null;
  }

  async events(id: string, options: { after?: string } = {}): Promise<StoredEvent[]> {
    return this.store.events(id, options.after);
  }

  async tail(
    cursor: string | null,
    options: BlockOptions,
  ): Promise<{ cursor: string; items: FeedItem[] }> {
    if (cursor === null) return { cursor: this.store.feedHead(), items: [] };
    if (!isEventId(cursor)) {
      throw new RangeError("Cannot read the feed: the cursor is not a stream id");
    }
    const found = await this.store.block(options, () => this.store.feedAfter(cursor, TAIL_COUNT));
    const items = found.map(({ item }) => structuredClone(item));
    return { cursor: found.at(-1)?.id ?? cursor, items };
  }

  async list(owner: string, options: ListOptions): Promise<JobPage> {
    return this.store.list(owner, options);
  }

  async queuePosition(id: string): Promise<number | null> {
    if (this.store.job(id)?.record.status !== "queued") return null;
    // Ahead of a waiting job: the entries no worker took yet, and those the fair order puts first.
    // A job waiting out a retry backoff has the whole line ahead of it.
    const rank = this.turns.room.rank(id);
    if (rank !== null) return this.queue.undelivered + rank;
    return this.queue.position(id) ?? this.queue.undelivered + this.turns.room.size;
  }

  async replay(
    cursor: string,
    limit: number,
  ): Promise<{ cursor: string; items: FeedItem[] } | null> {
    if (!isEventId(cursor)) return null;
    const found = this.store.feedSince(cursor, limit);
    if (found === null) return null;
    const items = found.map(({ item }) => structuredClone(item));
    return { cursor: found.at(-1)?.id ?? cursor, items };
  }

  /** Pending webhook deliveries; a 410 also forgets the job's webhook. */
  get webhooks(): WebhookOutbox {
    return this.store.outbox;
  }

  /** Pending Socket.IO notices (with `notices` only). */
  get notices(): MemoryOutbox | undefined {
    return this.store.notices ?? undefined;
  }

  async sharedSecret(name: string): Promise<string> {
    let secret = this.#secrets.get(name);
    if (secret === undefined) {
      const bytes = crypto.getRandomValues(new Uint8Array(32));
      secret = bytes.toBase64({ alphabet: "base64url", omitPadding: true });
      this.#secrets.set(name, secret);
    }
    return secret;
  }
}
