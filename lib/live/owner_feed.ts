/**
 * Streams of every job of one owner. The relay hands each feed item to the owner's group here, which
 * delivers it to every stream of that owner in feed order (a success once its image is read: one read
 * per success). Each stream hands out as event ids its resume point: the vector of the last feed id it
 * has passed per partition (see FeedItem.cursor). A stream that resumes from such a vector holds live
 * items while the broker's replay runs, then sends the held ones the replay did not reach: no gap, no
 * duplicate, since every partition's ids only grow.
 */
import type { Logger } from "@logtape/logtape";
import { isTransient } from "../errors.ts";
import type { EndReason, Subscription } from "./relay_types.ts";
import { compareEventIds, type StoredEvent, withImage } from "./notifications.ts";
import type { Broker, FeedItem } from "../queue/types.ts";

/** One notification of one of the owner's jobs, with the resume point just after it. */
export interface OwnerEvent {
  cursor: string;
  jobId: string;
  event: StoredEvent;
}

/** Receives every notification of an owner's jobs, in feed order. */
export interface OwnerSubscriber {
  event(event: OwnerEvent): void;
  /** The resume point is out of reach: events may be missing (called before any other event). */
  reset?(): void;
  /** Resolves once the subscriber can take more; awaited between replayed events when present. */
  drain?(): Promise<void>;
  /** Called once: on close, on relay shutdown, or when the stream had to be cut off. */
  done?(reason: EndReason): void;
}

/** A feed item as the streams of its owner send it (its image put back). */
interface Shared {
  jobId: string;
  partition: number;
  /** The item's id on its partition's feed. */
  position: string;
  event: StoredEvent;
}

/** A registered stream of one owner. */
interface Sink {
  owner: string;
  subscriber: OwnerSubscriber;
  /** The last feed id passed per partition. */
  vector: string[];
  /** Live items held while the replay runs; null once live. */
  held: Shared[] | null;
  closed: boolean;
}

/** The streams of one owner and the items on their way to them, in order. */
interface Group {
  owner: string;
  sinks: Set<Sink>;
  queue: { item: FeedItem; image?: Promise<string | null> }[];
  pumping: boolean;
}

/** Options of OwnerFeeds. */
export interface OwnerFeedOptions {
  broker: Broker;
  log: Logger;
  /** The relay's position on every partition's feed: where a stream opened now starts. */
  positions(): readonly string[];
  /** Feed items asked of the broker per replay call. */
  replayBatch?: number;
  /** Live items a resuming stream may hold during its replay before it is cut off. */
  maxHeld?: number;
}

/** The owner-level streams of one process. */
export class OwnerFeeds {
  #groups = new Map<string, Group>();
  #broker: Broker;
  #log: Logger;
  #positions: () => readonly string[];
  #replayBatch: number;
  #maxHeld: number;
  #count = 0;

  constructor({ broker, log, positions, replayBatch = 200, maxHeld = 10_000 }: OwnerFeedOptions) {
    if (!(replayBatch >= 1)) throw new RangeError("Cannot create feeds: replayBatch must be >= 1");
    if (!(maxHeld >= 1)) throw new RangeError("Cannot create feeds: maxHeld must be >= 1");
    this.#broker = broker;
    this.#log = log;
    this.#positions = positions;
    this.#replayBatch = replayBatch;
    this.#maxHeld = maxHeld;
  }

  /** Open streams. */
  get size(): number {
    return this.#count;
  }

  /** True when `owner` has a stream here (only then does an item need handing over). */
  has(owner: string): boolean {
    return this.#groups.has(owner);
  }

  /** Hands over one feed item of an owner with streams here; `image` reads a success's image. */
  push(item: FeedItem, image: () => Promise<string | null>): void {
    const group = this.#groups.get(item.owner);
    if (!group) return;
    const success = item.notification.type === "succeeded";
    if (!group.pumping && group.queue.length === 0 && !success) {
      return this.#deliver(group, shared(item, null));
    }
    group.queue.push(success ? { item, image: image() } : { item });
    if (!group.pumping) void this.#pump(group);
  }

  /** Delivers the queue in order, waiting for each success's image; other owners never wait on it. */
  async #pump(group: Group): Promise<void> {
    group.pumping = true;
    try {
      while (group.queue.length > 0) {
        const { item, image } = group.queue.shift()!;
        const base64 = image ? await image.catch(() => null) : null;
        this.#deliver(group, shared(item, base64));
      }
    } finally {
      group.pumping = false;
      if (group.sinks.size === 0 && this.#groups.get(group.owner) === group) {
        this.#groups.delete(group.owner);
      }
    }
  }

  #deliver(group: Group, item: Shared): void {
    for (const sink of [...group.sinks]) {
      if (sink.held === null) this.#send(sink, item);
      else if (sink.held.length < this.#maxHeld) sink.held.push(item);
      else this.#remove(sink, "closed");
    }
  }

  /** Sends one item unless the stream is past it; a subscriber that throws is dropped. */
  #send(sink: Sink, item: Shared): void {
    if (!advance(sink.vector, item.partition, item.position)) return;
    try {
      sink.subscriber.event({
        cursor: sink.vector.join(","),
        jobId: item.jobId,
        event: item.event,
      });
    } catch (error) {
      this.#log.warn("Cannot send an owner's event: {error}", { error: String(error) });
      this.#remove(sink, "closed");
    }
  }

  /**
   * Registers a stream of `owner`'s jobs: live from now, or, with `after` (an event id such a stream
   * handed out), first every event since then (in the background, paced by `drain`). When the broker
   * cannot reach back that far the subscriber's `reset` comes first, then live events.
   */
  subscribe(owner: string, subscriber: OwnerSubscriber, after?: string): Subscription {
    const now = [...this.#positions()];
    const sink: Sink = {
      owner,
      subscriber,
      vector: now,
      held: after === undefined ? null : [],
      closed: false,
    };
    let group = this.#groups.get(owner);
    if (!group) {
      group = { owner, sinks: new Set(), queue: [], pumping: false };
      this.#groups.set(owner, group);
    }
    group.sinks.add(sink);
    this.#count++;
    if (after !== undefined) void this.#catchUp(sink, after, now);
    return { close: () => this.#remove(sink, "closed") };
  }

  /** Replays what the stream missed since `after`, then sends the live items held meanwhile. */
  async #catchUp(sink: Sink, after: string, now: string[]): Promise<void> {
    const parts = after.split(",");
    const usable = parts.length === now.length;
    // Replayed events are numbered from the resume point; live ones from `now` once it is passed.
    if (usable) sink.vector = parts;
    try {
      let cursor = after;
      for (;;) {
        const page = usable ? await this.#broker.replay(cursor, this.#replayBatch) : null;
        if (sink.closed) return;
        if (page === null) {
          sink.subscriber.reset?.();
          break;
        }
        for (const item of page.items) {
          if (item.owner !== sink.owner) {
            advance(sink.vector, item.partition, item.cursor);
            continue;
          }
          const image = item.notification.type === "succeeded"
            ? await this.#broker.image(item.jobId)
            : null;
          await sink.subscriber.drain?.();
          if (sink.closed) return;
          this.#send(sink, shared(item, image));
        }
        page.cursor.split(",").forEach((id, p) => advance(sink.vector, p, id));
        if (page.items.length < this.#replayBatch || page.cursor === cursor) break;
        cursor = page.cursor;
      }
    } catch (error) {
      if (sink.closed) return;
      this.#log.warn("Cannot replay the feed of an owner: {error}", { error: String(error) });
      // Not now (the store is away): end the stream, the client resumes later. Anything else: the
      // cursor cannot be followed, so the client starts over.
      if (isTransient(error)) return this.#remove(sink, "closed");
      sink.subscriber.reset?.();
    }
    now.forEach((id, p) => advance(sink.vector, p, id));
    const held = sink.held ?? [];
    sink.held = null;
    for (const item of held) {
      if (sink.closed) return;
      this.#send(sink, item);
    }
  }

  #remove(sink: Sink, reason: EndReason): void {
    if (sink.closed) return;
    sink.closed = true;
    sink.held = null;
    this.#count--;
    const group = this.#groups.get(sink.owner);
    if (group?.sinks.delete(sink) && group.sinks.size === 0 && !group.pumping) {
      this.#groups.delete(sink.owner);
    }
    sink.subscriber.done?.(reason);
  }

  /** Ends every stream (the relay is closing). */
  closeAll(): void {
    for (const group of [...this.#groups.values()]) {
      for (const sink of [...group.sinks]) this.#remove(sink, "closed");
    }
    this.#groups.clear();
  }
}

/** Moves the vector's partition `p` to `id` when that is further on; false when it was not. */
function advance(vector: string[], p: number, id: string): boolean {
  if (p >= vector.length) return false;
  const current = vector[p];
  if (isId(current) && isId(id) && compareEventIds(id, current) <= 0) return false;
  vector[p] = id;
  return true;
}

function isId(value: string | undefined): value is string {
  return value !== undefined && /^\d{1,20}(-\d{1,20})?$/.test(value);
}

/** A feed item as the owner's streams send it, with the image of a success put back when read. */
function shared(item: FeedItem, base64: string | null): Shared {
  const event: StoredEvent = {
    eventId: item.eventId,
    notification: item.notification,
    json: item.json,
  };
  return {
    jobId: item.jobId,
    partition: item.partition,
    position: item.cursor,
    event: base64 === null ? event : withImage(event, base64),
  };
}
