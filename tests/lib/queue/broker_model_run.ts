/** Runs a generated operation sequence against a real broker and checks it step by step against the model. */
import assert from "node:assert/strict";
import type { Broker, Delivery, NewJob, Outcome } from "../../../lib/queue/types.ts";
import { IMAGE_BYTES } from "./broker_contract_helpers.ts";
import { type Answer, Model, promptOf, type SeenDelivery, type Snapshot } from "./broker_model.ts";
import {
  assertInvariants,
  FeedWatch,
  listAll,
  snapshot,
  TakenTasks,
} from "./broker_model_checks.ts";
import {
  FAILED_ERROR,
  JOB_IDS,
  MORE_IMAGES,
  type Op,
  OWNERS,
  referencesOf,
  RETRY_REASON,
  REVISED,
  STATUSES,
  WEBHOOK_URL,
} from "./broker_model_ops.ts";
import { takeTime } from "./broker_model_outbox.ts";

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

function outcomeOf(kind: "succeeded" | "revised" | "failed", images = 1): Outcome {
  if (kind === "failed") return { type: "failed", error: FAILED_ERROR };
  const outcome: Outcome = { type: "succeeded", image: IMAGE_BYTES, mimeType: "image/png" };
  if (images > 1) outcome.more = MORE_IMAGES.slice(0, images - 1).map((extra) => ({ ...extra }));
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

/** What a runner keeps between the steps of one sequence. */
interface RunState {
  model: Model;
  held: Delivery[];
  labels: Labels;
  taken: TakenTasks;
  /** The current step's place and the model's answer to it. */
  where: string;
  expected: Answer;
}

async function step(target: Target, op: Op, index: number, state: RunState) {
  const { broker } = target;
  const { model, held, labels, taken } = state;
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
      const job: NewJob = { id, owner: OWNERS[op.owner], prompt: promptOf(id) };
      if (op.hook !== undefined) job.webhook = WEBHOOK_URL;
      if (Array.isArray(op.hook)) job.webhookEvents = op.hook;
      if (op.refs) job.references = referencesOf(id, op.refs);
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
    case "takeWebhooks": {
      // The model's answer names the live tasks due: the broker must return those, ghosts may come too.
      const live = state.expected as string[];
      return await taken.take(broker, op, {
        live,
        ghosts: model.outbox.ghosts(),
        where: state.where,
      });
    }
    case "doneWebhook":
    case "retryWebhook": {
      const task = taken.handles[model.outbox.picked];
      if (!task) return "skip";
      if (op.kind === "doneWebhook") await broker.webhooks.done(task);
      else await broker.webhooks.retry(task, takeTime(taken.clock + op.delay));
      return "done";
    }
    case "stopWebhook":
      await broker.webhooks.stop(JOB_IDS[op.job]);
      return "done";
    case "list":
      return await listAll(broker, OWNERS[op.owner], { ...op, where: state.where });
    case "queuePosition": {
      const position = await broker.queuePosition(JOB_IDS[op.job]);
      const valid = position === null || (Number.isInteger(position) && position >= 0);
      assert.ok(valid, `${state.where}: queue position ${position}`);
      return position !== null;
    }
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
    case "giveBack":
      return await broker.retryLater(delivery, 0, RETRY_REASON, { giveBack: true });
    case "finish":
      return await broker.finish(delivery, outcomeOf(op.outcome, op.images));
    case "deadLetter":
      await broker.deadLetter(delivery, "delivered too many times");
      return "done";
    case "ack":
      await broker.ack(delivery);
      return "done";
  }
}

/** What one run of a sequence observed, for comparing brokers with each other. */
export interface Trace {
  answers: Answer[];
  snapshots: Snapshot[];
  deadLetters: number;
}

/**
 * The reads that end every run: each owner's jobs, paged (by 1 to 3, as the run's length says) and of
 * one status, each job's queue position, and every webhook task once all leases and delays ran out.
 */
function audit(n: number): Op[] {
  const limit = 1 + n % 3;
  const status = STATUSES[n % STATUSES.length];
  return [
    ...OWNERS.flatMap((_, owner): Op[] => [
      { kind: "list", owner, status: undefined, limit },
      { kind: "list", owner, status, limit: 100 },
    ]),
    ...JOB_IDS.map((_, job): Op => ({ kind: "queuePosition", job })),
    { kind: "takeWebhooks", advance: 3, lease: 1 },
  ];
}

/**
 * Runs `ops` on the target and on a fresh model, asserting after each step that the answer, every
 * job's get() and events(), the feed items and the invariants agree; at the end, that the audit's
 * reads do too. Returns what the broker showed.
 */
export async function runAgainstModel(target: Target, ops: Op[]): Promise<Trace> {
  const model = new Model(target.broker.partitions);
  const state: RunState = {
    model,
    held: [],
    labels: new Labels(),
    taken: new TakenTasks(),
    where: "",
    expected: null,
  };
  const seenOpen = new Set<string>();
  const excused = new Set<string>();
  const trace: Trace = { answers: [], snapshots: [], deadLetters: 0 };
  await target.broker.init();
  const feed = await FeedWatch.open(target.broker);
  for (const [index, op] of ops.entries()) {
    const where = `step ${index} ${JSON.stringify(op)} on ${target.broker.kind}`;
    const expected = model.apply(op, index);
    Object.assign(state, { where, expected });
    // The holder acknowledging its own running entry strands the job by its own hand (a worker acks
    // only ended jobs and duplicates); any other step that strands one is a defect of the semantics.
    const stranded = model.stranded().filter((id) => !excused.has(id));
    if (op.kind === "ack") stranded.forEach((id) => excused.add(id));
    else assert.deepEqual(stranded, [], `${where}: the model itself strands a running job`);
    const answer = await step(target, op, index, state);
    assert.deepEqual(answer, expected, `${where}: the answer differs from the model`);
    await feed.check(target.broker, model.feed, where, state.taken.ordinals);
    const snap = await snapshot(target.broker, state.taken.ordinals);
    assert.deepEqual(snap, model.snapshot(), `${where}: the jobs differ from the model`);
    assertInvariants(snap, seenOpen, where);
    const statuses = Object.fromEntries(
      JOB_IDS.map((id) => [id, model.jobs.get(id)?.status ?? null]),
    );
    await target.check?.(statuses);
    trace.answers.push(answer);
    trace.snapshots.push(snap);
  }
  for (const op of audit(ops.length)) {
    const expected = model.apply(op, ops.length);
    const where = `after the run, ${JSON.stringify(op)} on ${target.broker.kind}`;
    Object.assign(state, { where, expected });
    assert.deepEqual(await step(target, op, ops.length, state), expected, where);
  }
  trace.deadLetters = await target.deadLetters();
  assert.equal(trace.deadLetters, model.deadLetters, "the dead letters differ from the model");
  return trace;
}
