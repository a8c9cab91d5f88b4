/** The operations the model-based broker test generates: their shape and their fast-check arbitrary. */
import fc from "fast-check";

/** Job ids the operations use: few, so that repeats, duplicates and resubmits happen. */
export const JOB_IDS = ["j0", "j1", "j2", "j3"] as const;
/** The two consumers that compete for entries. */
export const CONSUMERS = ["A", "B"] as const;
/** Owners a submit may name. */
export const OWNERS = ["alice", "bob"] as const;
/** The error of a canceled job. */
export const CANCELED = "Job canceled";
/** The reason retryLater is given (it stays in the logs: the job does not show it). */
export const RETRY_REASON = "provider busy";
/** The error of a failed outcome. */
export const FAILED_ERROR = "boom";
/** The revised prompt of a successful outcome that has one. */
export const REVISED = "revised fox";

type Consumer = (typeof CONSUMERS)[number];

/** One generated step; `d` picks a delivery handed out earlier, counting back from the latest. */
export type Op =
  | { kind: "submit"; job: number; owner: number }
  | { kind: "claim"; consumer: Consumer; count: number }
  | { kind: "reclaim"; consumer: Consumer; count: number }
  | { kind: "start"; d: number }
  | { kind: "renew"; consumer: Consumer; ds: number[] }
  | { kind: "retry"; d: number; long: boolean }
  | { kind: "promote"; all: boolean }
  | { kind: "finish"; d: number; outcome: "succeeded" | "revised" | "failed" }
  | { kind: "cancel"; job: number }
  | { kind: "deadLetter"; d: number }
  | { kind: "ack"; d: number }
  | { kind: "expire" };

const consumer = fc.constantFrom(...CONSUMERS);
const job = fc.nat(JOB_IDS.length - 1);
const d = fc.nat(3);
const count = fc.integer({ min: 1, max: 3 });
const outcome = fc.constantFrom("succeeded" as const, "revised" as const, "failed" as const);

function kind<K extends Op["kind"], R>(
  name: K,
  weight: number,
  rest: { [k in keyof R]: fc.Arbitrary<R[k]> },
) {
  return { weight, arbitrary: fc.record({ kind: fc.constant(name), ...rest }) as fc.Arbitrary<Op> };
}

/**
 * Sequences of operations: single steps, mixed with the idioms a worker follows (submit, claim and
 * start; retry, promote, claim and start; take over and start), so that runs reach the later states.
 */
export function opsArbitrary(maxLength: number): fc.Arbitrary<Op[]> {
  const op = fc.oneof(
    kind("submit", 3, { job, owner: fc.nat(OWNERS.length - 1) }),
    kind("claim", 4, { consumer, count }),
    kind("reclaim", 3, { consumer, count }),
    kind("start", 4, { d }),
    kind("renew", 3, { consumer, ds: fc.array(d, { minLength: 1, maxLength: 2 }) }),
    kind("retry", 3, { d, long: fc.boolean() }),
    kind("promote", 2, { all: fc.boolean() }),
    kind("finish", 3, { d, outcome }),
    kind("cancel", 2, { job }),
    kind("deadLetter", 1, { d }),
    kind("ack", 1, { d }),
    { weight: 1, arbitrary: fc.constant<Op>({ kind: "expire" }) },
  );
  const chunk = fc.oneof(
    { weight: 12, arbitrary: op.map((one) => [one]) },
    {
      weight: 3,
      arbitrary: fc.tuple(job, consumer).map(([n, c]): Op[] => [
        { kind: "submit", job: n, owner: 0 },
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
  );
  return fc.array(chunk, { minLength: 1, maxLength: Math.ceil(maxLength / 2), size: "max" })
    .map((chunks) => chunks.flat().slice(0, maxLength));
}
