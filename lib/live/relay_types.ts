/** The relay's subscription types: what subscribers receive, and how the relay keeps them per job. */
import type { StoredEvent } from "./notifications.ts";

/**
 * Why a subscription ended: the terminal event was delivered, the job is gone (expired or lost with
 * its store) so no event will come, or it was closed (by the subscriber or the relay shutting down).
 */
export type EndReason = "terminal" | "gone" | "closed";

/** Receives a job's events in order; `done` is called once after the terminal event, when the job is
 * gone, or on close. */
export interface Subscriber {
  event(event: StoredEvent): void;
  done?(reason: EndReason): void;
}

/** A live registration; `close()` stops delivery and is idempotent. */
export interface Subscription {
  close(): void;
}

/** One subscriber of one job, and what it was sent. */
export interface Entry {
  sink: Subscriber;
  lastSent: string;
  /** False until the entry's replay has been read. */
  ready: boolean;
  closed: boolean;
  /** When set, the first read must show this owner, or the subscription is refused as not found. */
  owner?: string;
  refused?: boolean;
}

/** The local subscribers of one job, and the single read of its log that serves them all. */
export interface JobSubs {
  entries: Set<Entry>;
  reading: Promise<void> | null;
  /** True when a read was asked for while one was under way. */
  again: boolean;
  /** The event that read must reach (null: it must happen whatever the read under way returns). */
  upTo: string | null;
}
