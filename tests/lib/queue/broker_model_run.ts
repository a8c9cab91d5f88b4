/** Runs a generated operation sequence against a real broker and checks it step by step against the model. */
import assert from "node:assert/strict";
import { TERMINAL_STATUSES } from "../../../lib/live/notifications.ts";
import type { Broker, Delivery, Outcome } from "../../../lib/queue/types.ts";
import { IMAGE_BYTES } from "./broker_contract_helpers.ts";
import {
  type Answer,
  type EventShape,
  type JobShape,
  Model,
  promptOf,
  type SeenDelivery,
  type Snapshot,
} from "./broker_model.ts";
import {
  FAILED_ERROR,
  JOB_IDS,
  type Op,
  OWNERS,
  RETRY_REASON,
  REVISED,
} from "./broker_model_ops.ts";

/** A broker under test with the hooks the runner needs besides the Broker interface. */
export interface Target {
  broker: Broker;
  /** The broker's clock in epoch ms (the memory broker's fake one, or the wall clock). */
  now(): number;
  /** Makes every terminal job expire (advance the clock past the TTL, or delete the keys Redis would). */
  expire(): Promise<void>;
  /** How many dead letters the broker recorded. */
  deadLetters(): Promise<number>;
  /** Extra checks after each step, given the statuses the model expects (null: no such job). */
  check?(statuses: Record<string, string | null>): Promise<void>;
}

/** Retry delays: a short one that `promote` moves, a long one only `promote all` moves. */
const SHORT_MS = 600_000;
const LONG_MS = 1_000_000_000;
const LATER_MS = { short: 3_600_000, all: 2_000_000_000 };
/** A claim that does not wait: the sequence is single-threaded, nobody adds entries meanwhile. */
const NO_WAIT = { blockMs: 0 };

function outcomeOf(kind: "succeeded" | "revised" | "failed"): Outcome {
  if (kind === "failed") return { type: "failed", error: FAILED_ERROR };
  const outcome: Outcome = { type: "succeeded", image: IMAGE_BYTES, mimeType: "image/png" };
  return kind === "revised" ? { ...outcome, revisedPrompt: REVISED } : outcome;
}

/** Labels entry ids by order of first delivery, as the model does. */
class Labels {
  #ids = new Map<string, number>();
  /** Entry ids are per stream: two partitions' streams may hand out the same id, so the job counts too. */
  label(jobId: string, entryId: string): number {
    const key = `${jobId} ${entryId}`;
    if (!this.#ids.has(key)) this.#ids.set(key, this.#ids.size);
    return this.#ids.get(key)!;
  }
}

async function step(target: Target, op: Op, index: number, held: Delivery[], labels: Labels) {
  const { broker } = target;
  const seen = (list: Delivery[]): SeenDelivery[] => {
    held.push(...list);
    return list.map(({ entryId, jobId, deliveries, consumer }) => ({
      entry: labels.label(jobId, entryId),
      jobId,
      deliveries,
      consumer,
    }));
  };
  const pick = (n: number) => held[held.length - 1 - n % held.length];
  switch (op.kind) {
    case "submit": {
      const id = JOB_IDS[op.job];
      const job = { id, owner: OWNERS[op.owner], prompt: promptOf(id) };
      const { created, job: record } = await broker.submit(job);
      return { created, status: record.status, attempts: record.attempts, owner: record.owner };
    }
    case "claim":
      return seen(await broker.claim(op.consumer, op.count, NO_WAIT));
    case "reclaim":
      return seen(await broker.reclaim(op.consumer, 0, op.count));
    case "promote":
      return await broker.promoteDue(target.now() + (op.all ? LATER_MS.all : LATER_MS.short));
    case "cancel":
      return await broker.cancel(JOB_IDS[op.job]);
    case "expire":
      await target.expire();
      return "done";
  }
  if (held.length === 0) return "skip";
  if (op.kind === "renew") return await broker.renew(op.consumer, op.ds.map(pick));
  const delivery = pick(op.d);
  switch (op.kind) {
    case "start": {
      const record = await broker.start(delivery);
      return record && { status: record.status, attempts: record.attempts };
    }
    case "retry":
      return await broker.retryLater(
        delivery,
        (op.long ? LONG_MS : SHORT_MS) + index,
        RETRY_REASON,
      );
    case "finish":
      return await broker.finish(delivery, outcomeOf(op.outcome));
    case "deadLetter":
      await broker.deadLetter(delivery, "delivered too many times");
      return "done";
    case "ack":
      await broker.ack(delivery);
      return "done";
  }
}

function jobShape(view: Record<string, unknown> | null): JobShape | null {
  if (!view) return null;
  const shape: JobShape = {};
  for (const [key, value] of Object.entries(view)) if (value !== undefined) shape[key] = value;
  if (typeof shape.createdAt === "string") shape.createdAt = "*";
  if (typeof shape.updatedAt === "string") shape.updatedAt = "*";
  return shape;
}

async function snapshot(broker: Broker): Promise<Snapshot> {
  const out: Snapshot = {};
  for (const id of JOB_IDS) {
    const view = await broker.get(id, { image: true });
    const events: EventShape[] = (await broker.events(id)).map(({ eventId, notification }) => {
      const { at: _at, ...rest } = notification;
      return { eventId, notification: rest };
    });
    out[id] = { job: jobShape(view as unknown as Record<string, unknown> | null), events };
  }
  return out;
}

/** The invariants every snapshot must hold, whatever the model says. */
function assertInvariants(snap: Snapshot, seenOpen: Set<string>, where: string): void {
  for (const [id, { job, events }] of Object.entries(snap)) {
    const terminals = events.filter((e) => TERMINAL_STATUSES.has(String(e.notification.type)));
    assert.ok(terminals.length <= 1, `${where}: ${id} has ${terminals.length} terminal events`);
    if (job && TERMINAL_STATUSES.has(String(job.status))) {
      assert.equal(terminals.length, 1, `${where}: ${id} ended without its terminal event`);
      assert.equal(events.at(-1)?.notification.type, job.status, `${where}: ${id} event != status`);
    }
    if (!job) {
      assert.ok(!seenOpen.has(id), `${where}: ${id} vanished before it ended`);
    }
    if (job && !TERMINAL_STATUSES.has(String(job.status))) seenOpen.add(id);
    else seenOpen.delete(id);
  }
}

/** What one run of a sequence observed, for comparing brokers with each other. */
export interface Trace {
  answers: Answer[];
  snapshots: Snapshot[];
  deadLetters: number;
}

/**
 * Runs `ops` on the target and on a fresh model, asserting after each step that the answer, every
 * job's get() and events(), and the invariants agree; returns what the broker showed.
 */
export async function runAgainstModel(target: Target, ops: Op[]): Promise<Trace> {
  const model = new Model(target.broker.partitions);
  const held: Delivery[] = [];
  const labels = new Labels();
  const seenOpen = new Set<string>();
  const excused = new Set<string>();
  const trace: Trace = { answers: [], snapshots: [], deadLetters: 0 };
  await target.broker.init();
  for (const [index, op] of ops.entries()) {
    const where = `step ${index} ${JSON.stringify(op)} on ${target.broker.kind}`;
    const expected = model.apply(op, index);
    // The holder acknowledging its own running entry strands the job by its own hand (a worker acks
    // only ended jobs and duplicates); any other step that strands one is a defect of the semantics.
    const stranded = model.stranded().filter((id) => !excused.has(id));
    if (op.kind === "ack") stranded.forEach((id) => excused.add(id));
    else assert.deepEqual(stranded, [], `${where}: the model itself strands a running job`);
    const answer = await step(target, op, index, held, labels);
    assert.deepEqual(answer, expected, `${where}: the answer differs from the model`);
    const snap = await snapshot(target.broker);
    assert.deepEqual(snap, model.snapshot(), `${where}: the jobs differ from the model`);
    assertInvariants(snap, seenOpen, where);
    const statuses = Object.fromEntries(
      JOB_IDS.map((id) => [id, model.jobs.get(id)?.status ?? null]),
    );
    await target.check?.(statuses);
    trace.answers.push(answer);
    trace.snapshots.push(snap);
  }
  trace.deadLetters = await target.deadLetters();
  assert.equal(trace.deadLetters, model.deadLetters, "the dead letters differ from the model");
  return trace;
}
