/** The operations the model-based broker test generates: their shape and their fast-check arbitrary. */
import fc from "fast-check";
import type { EventType, JobStatus } from "../../../lib/live/notifications.ts";

/** Job ids the operations use: few, so that repeats, duplicates and resubmits happen. */
export const JOB_IDS = ["j0", "j1", "j2", "j3"] as const;
/** The two consumers that compete for entries. */
export const CONSUMERS = ["A", "B"] as const;
/** Owners a submit may name. */
export const OWNERS = ["alice", "bob"] as const;
/** The event types a webhook may ask for. */
export const EVENT_TYPES: readonly EventType[] = [
  "queued",
  "started",
  "succeeded",
  "failed",
  "canceled",
];
/** The statuses a listing may filter by. */
export const STATUSES: readonly JobStatus[] = [
  "queued",
  "running",
  "succeeded",
  "failed",
  "canceled",
];
/** The URL of every generated webhook: stored only, never called. */
export const WEBHOOK_URL = "https://hooks.example/model";
/** The error of a canceled job. */
export const CANCELED = "Job canceled";
/** The reason retryLater is given (it stays in the logs: the job does not show it). */
export const RETRY_REASON = "provider busy";
/** The error of a failed outcome. */
export const FAILED_ERROR = "boom";
/** The revised prompt of a successful outcome that has one. */
export const REVISED = "revised fox";

/** The images a success stores after the first PNG, in order (a JPEG, then a WebP). */
export const MORE_IMAGES = [
  { image: new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 7]), mimeType: "image/jpeg" },
  { image: new TextEncoder().encode("RIFF\0\0\0\0WEBPVP8 "), mimeType: "image/webp" },
] as const;

/** The reference images a submit with `refs` of them names. */
export function referencesOf(id: string, refs = 0): string[] {
  return Array.from({ length: refs }, (_, k) => `https://refs.example/${id}/${k}.png`);
}

type Consumer = (typeof CONSUMERS)[number];
/** A submit's webhook: none, one with the default (terminal) events, or one asking for these. */
export type Hook = undefined | "default" | EventType[];

/**
 * One generated step; `d` picks a delivery handed out earlier, counting back from the latest, and `h`
 * a webhook task taken earlier. Webhook times are in units of the take clock, which `advance` moves.
 */
export type Op =
  | { kind: "submit"; job: number; owner: number; hook: Hook; refs?: number }
  | { kind: "claim"; consumer: Consumer; count: number }
  | { kind: "reclaim"; consumer: Consumer; count: number }
  | { kind: "start"; d: number }
  | { kind: "renew"; consumer: Consumer; ds: number[] }
  | { kind: "retry"; d: number; long: boolean }
  /** The provider answered 429: the turn goes back (no attempt counted, first in its owner's line). */
  | { kind: "giveBack"; d: number }
  | { kind: "promote"; all: boolean }
  | { kind: "finish"; d: number; outcome: "succeeded" | "revised" | "failed"; images?: number }
  | { kind: "cancel"; job: number }
  | { kind: "deadLetter"; d: number }
  | { kind: "ack"; d: number }
  | { kind: "expire" }
  | { kind: "takeWebhooks"; advance: number; lease: number }
  | { kind: "doneWebhook"; h: number }
  | { kind: "retryWebhook"; h: number; delay: number }
  | { kind: "stopWebhook"; job: number }
  | { kind: "list"; owner: number; status: JobStatus | undefined; limit: number }
  | { kind: "queuePosition"; job: number };

const consumer = fc.constantFrom(...CONSUMERS);
const job = fc.nat(JOB_IDS.length - 1);
const d = fc.nat(3);
const count = fc.integer({ min: 1, max: 3 });
const outcome = fc.constantFrom("succeeded" as const, "revised" as const, "failed" as const);
const owner = fc.nat(OWNERS.length - 1);
const hook: fc.Arbitrary<Hook> = fc.option(
  fc.oneof(
    fc.constant<Hook>("default"),
    fc.shuffledSubarray([...EVENT_TYPES], { minLength: 1 }),
  ),
  { nil: undefined, freq: 4 },
);
const h = fc.nat(3);

function kind<K extends Op["kind"], R>(
  name: K,
  weight: number,
  rest: { [k in keyof R]: fc.Arbitrary<R[k]> },
) {
  return { weight, arbitrary: fc.record({ kind: fc.constant(name), ...rest }) as fc.Arbitrary<Op> };
}

/**
 * Sequences of operations: single steps, mixed with the idioms a worker follows (submit, claim and
 * start; retry, promote, claim and start; take over and start) and a webhook dispatcher does (take,
 * then done or retry; a 410), so that runs reach the later states.
 */
export function opsArbitrary(maxLength: number): fc.Arbitrary<Op[]> {
  const op = fc.oneof(
    kind("submit", 3, { job, owner, hook, refs: fc.nat(3) }),
    kind("claim", 4, { consumer, count }),
    kind("reclaim", 3, { consumer, count }),
    kind("start", 4, { d }),
    kind("renew", 3, { consumer, ds: fc.array(d, { minLength: 1, maxLength: 2 }) }),
    kind("retry", 3, { d, long: fc.boolean() }),
    kind("giveBack", 2, { d }),
    kind("promote", 2, { all: fc.boolean() }),
    kind("finish", 3, { d, outcome, images: fc.integer({ min: 1, max: 3 }) }),
    kind("cancel", 2, { job }),
    kind("deadLetter", 1, { d }),
    kind("ack", 1, { d }),
    { weight: 1, arbitrary: fc.constant<Op>({ kind: "expire" }) },
    kind("takeWebhooks", 3, { advance: fc.nat(2), lease: fc.integer({ min: 1, max: 2 }) }),
    kind("doneWebhook", 1, { h }),
    kind("retryWebhook", 1, { h, delay: fc.nat(2) }),
    kind("stopWebhook", 2, { job }),
    kind("list", 3, {
      owner,
      status: fc.option(fc.constantFrom(...STATUSES), { nil: undefined, freq: 2 }),
      limit: fc.constantFrom(1, 2, 3, 100),
    }),
    kind("queuePosition", 2, { job }),
  );
  const chunk = fc.oneof(
    { weight: 12, arbitrary: op.map((one) => [one]) },
    {
      weight: 3,
      arbitrary: fc.tuple(job, consumer, hook).map(([n, c, hook]): Op[] => [
        { kind: "submit", job: n, owner: 0, hook },
        { kind: "claim", consumer: c, count: 1 },
        { kind: "start", d: 0 },
      ]),
    },
    {
      weight: 2,
      arbitrary: fc.tuple(consumer, fc.boolean()).map(([c, long]): Op[] => [
        { kind: "retry", d: 0, long },
        { kind: "promote", all: long },
        { kind: "claim", consumer: c, count: 1 },
        { kind: "start", d: 0 },
      ]),
    },
    {
      weight: 2,
      arbitrary: consumer.map((c): Op[] => [
        { kind: "reclaim", consumer: c, count: 1 },
        { kind: "start", d: 0 },
      ]),
    },
    {
      weight: 2,
      arbitrary: fc.tuple(fc.nat(2), fc.option(fc.nat(2), { nil: undefined })).map(
        ([advance, delay]): Op[] => [
          { kind: "takeWebhooks", advance, lease: 1 },
          delay === undefined
            ? { kind: "doneWebhook", h: 0 }
            : { kind: "retryWebhook", h: 0, delay },
        ],
      ),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(job, hook).map(([n, hook]): Op[] => [
        { kind: "submit", job: n, owner: 1, hook: hook ?? "default" },
        { kind: "takeWebhooks", advance: 0, lease: 1 },
        { kind: "stopWebhook", job: n },
      ]),
    },
  );
  return fc.array(chunk, { minLength: 1, maxLength: Math.ceil(maxLength / 2), size: "max" })
    .map((chunks) => chunks.flat().slice(0, maxLength));
}
