/** Shared helpers of the broker contract suite. */
import assert from "node:assert/strict";
import {
  type Notification,
  notificationSchema,
  type StoredEvent,
} from "../../../lib/live/notifications.ts";
import { partitionOf } from "../../../lib/queue/partitions.ts";
import type { Broker, Delivery, FeedItem, NewJob, Outcome } from "../../../lib/queue/types.ts";

/** What a contract test needs to reach beside the Broker interface, per broker. */
export interface ContractHooks {
  /** Adds an entry with the seed's fields to the jobs stream, as another service does; returns its id. */
  addSeedEntry(seed: { id: string; token: string; prompt: string }): Promise<string>;
  /** Lets the job time to live pass: whatever has an expiry is gone afterwards. */
  passTtl(): Promise<void>;
  /** The reasons of the dead letters recorded so far, oldest first. */
  deadReasons(): Promise<string[]>;
}

/** Registers one contract test that runs against a fresh broker. */
export type ContractTest = (
  title: string,
  fn: (broker: Broker, t: Deno.TestContext, hooks: ContractHooks) => Promise<void>,
) => void;

/** A 1x1 PNG, base64. */
export const IMAGE =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC";
/** The same PNG's bytes, as a worker hands them over. */
export const IMAGE_BYTES = Uint8Array.fromBase64(IMAGE);
/** A successful outcome with a revised prompt. */
export const SUCCESS = {
  type: "succeeded",
  image: IMAGE_BYTES,
  mimeType: "image/png",
  revisedPrompt: "a red fox, snowy",
} as const satisfies Outcome;
/** A bound no healthy broker gets near; not a timing assertion. */
export const GENEROUS_MS = 4000;

/** A new job with a unique id. */
export function newJob(extra: Partial<NewJob> = {}): NewJob {
  return { id: crypto.randomUUID(), owner: "alice", prompt: "a red fox in snow", ...extra };
}

/** `count` new jobs whose ids share one partition, so their entries share one stream and its order. */
export function sameStreamJobs(
  broker: Broker,
  count: number,
  extra: Partial<NewJob> = {},
): NewJob[] {
  const first = newJob(extra);
  const jobs = [first];
  const p = partitionOf(first.id, broker.partitions);
  while (jobs.length < count) {
    const job = newJob(extra);
    if (partitionOf(job.id, broker.partitions) === p) jobs.push(job);
  }
  return jobs;
}

/** A delivery as a seed entry from another service would arrive. */
export function seedDelivery(prompt: string): Delivery {
  return {
    entryId: "0-1",
    jobId: crypto.randomUUID(),
    deliveries: 1,
    consumer: "",
    seed: { token: "t", prompt },
  };
}

/** A delivery of an entry nobody holds, naming a job that does not exist. */
export function strayDelivery(): Delivery {
  return { entryId: "0-1", jobId: crypto.randomUUID(), deliveries: 1, consumer: "" };
}

/** The fields of a job that submit and adoption set, without empty ones. */
export function pick(job: NewJob & { status: string; attempts: number }) {
  const { id, owner, prompt, model, aspectRatio, status, attempts } = job;
  const picked = { id, owner, prompt, model, aspectRatio, status, attempts };
  return Object.fromEntries(Object.entries(picked).filter(([, value]) => value !== undefined));
}

/** The event types, in order. */
export function types(events: StoredEvent[]): string[] {
  return events.map((event) => event.notification.type);
}

/** The notification's error, when it has one. */
export function errorOf(notification: Notification): string | undefined {
  return "error" in notification ? notification.error : undefined;
}

/** The event with its image emptied, to compare feed items with events. */
export function withoutImage(item: { eventId: string; notification: Notification }) {
  const notification = structuredClone(item.notification);
  if (notification.type === "succeeded") notification.data.image = "";
  return { eventId: item.eventId, notification };
}

/** Asserts the notification has exactly the contract's fields for its type. */
export function assertNotification(notification: Notification, jobId: string): void {
  assert.deepEqual(notificationSchema.parse(notification), notification);
  assert.equal(notification.id, jobId);
  assert.equal(new Date(notification.at).toISOString(), notification.at);
  const keys = ["at", "id", "success", "type"];
  if (notification.type === "succeeded") keys.push("data");
  if (!notification.success) keys.push("error");
  assert.deepEqual(Object.keys(notification).sort(), keys.sort());
}

/**
 * Deliveries claimJob took for another job than the one it looked for, per broker and consumer: with
 * several partitions claims do not come in submission order, so a later claimJob finds them here.
 */
const stash = new WeakMap<Broker, Delivery[]>();

/** Claims until the entry of `jobId` arrives; fails after a generous while. */
export async function claimJob(broker: Broker, jobId: string, consumer = "w1"): Promise<Delivery> {
  const kept = stash.get(broker) ?? [];
  stash.set(broker, kept);
  const held = kept.findIndex((d) => d.jobId === jobId && d.consumer === consumer);
  if (held >= 0) return kept.splice(held, 1)[0];
  const deadline = performance.now() + GENEROUS_MS;
  while (performance.now() < deadline) {
    const claimed = await broker.claim(consumer, 1, { blockMs: 200 });
    const found = claimed.find((delivery) => delivery.jobId === jobId);
    kept.push(...claimed.filter((delivery) => delivery !== found));
    if (found) return found;
    if (!broker.blocking) await sleep(20);
  }
  throw new Error(`Cannot claim the job: no entry for ${jobId} arrived`);
}

/** Tails from `cursor` until `count` items of `jobId` arrived. */
export async function tailUntil(broker: Broker, cursor: string, jobId: string, count: number) {
  const items: FeedItem[] = [];
  const deadline = performance.now() + GENEROUS_MS;
  while (items.length < count && performance.now() < deadline) {
    const read = await broker.tail(cursor, { blockMs: 200 });
    items.push(...read.items.filter((item) => item.jobId === jobId));
    cursor = read.cursor;
    if (!broker.blocking && read.items.length === 0) await sleep(20);
  }
  assert.equal(items.length, count);
  return { cursor, items };
}

/** Waits; used only to order steps, never to assert durations. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
