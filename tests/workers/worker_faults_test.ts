/** The worker against broker faults (in memory): permanent write errors, lost leases, bad entries. */
import assert from "node:assert/strict";
import type { Logger } from "@logtape/logtape";
import { ReplyError } from "ioredis";
import { BrokerUnavailableError, RetryableError } from "../../lib/errors.ts";
import { MAX_RETRY_AFTER_MS } from "../../lib/provider/grok.ts";
import { PROCESSING_ERROR } from "../../lib/live/notifications.ts";
import { createMemoryBroker, type MemoryBroker } from "../../lib/queue/memory.ts";
import type { Broker, Delivery, LeaseStatus } from "../../lib/queue/types.ts";
import { ImageWorker, type ImageWorkerOptions } from "../../workers/image_worker.ts";
import { countingProvider } from "../support/app.ts";

const OOM = "OOM command not allowed when used memory > 'maxmemory'.";

/** One log call the worker made. */
interface Line {
  level: string;
  message: string;
  properties: Record<string, unknown>;
}

/** A Logger that records the calls the worker makes. */
function recordingLog(): { lines: Line[]; log: Logger } {
  const lines: Line[] = [];
  const at = (level: string) => (message: string, properties: Record<string, unknown> = {}) =>
    void lines.push({ level, message, properties });
  const log = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  return { lines, log: log as unknown as Logger };
}

type Overrides = { [K in keyof Broker]?: Broker[K] };

/** The broker with some methods replaced and every write counted by name. */
function intercept(broker: MemoryBroker, overrides: Overrides = {}) {
  const calls = new Map<string, number>();
  const proxy = new Proxy(broker, {
    get(target, name) {
      const own = Reflect.get(target, name, target);
      if (typeof own !== "function") return own;
      return (...args: unknown[]) => {
        calls.set(String(name), (calls.get(String(name)) ?? 0) + 1);
        const override = overrides[name as keyof Broker] as ((...a: unknown[]) => unknown);
        return override ? override(...args) : own.apply(target, args);
      };
    },
  });
  return { broker: proxy as Broker, calls: (name: keyof Broker) => calls.get(name) ?? 0 };
}

async function waitFor(what: string, check: () => unknown, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Cannot see ${what} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Runs `fn` with a started worker over `broker`; closes both after. */
async function withWorker(
  broker: Broker,
  options: Partial<ImageWorkerOptions>,
  fn: (worker: ImageWorker, ended: string[]) => Promise<void>,
): Promise<void> {
  const ended: string[] = [];
  const worker = new ImageWorker({
    broker,
    provider: countingProvider(),
    verifyToken: (token) => Promise.resolve({ sub: token }),
    log: recordingLog().log,
    concurrency: 2,
    leaseMs: 60_000, // the tests call maintain() themselves
    maxAttempts: 3,
    backoffBaseMs: 5,
    backoffMaxMs: 10,
    onFinished: (status) => void ended.push(status),
    ...options,
  });
  worker.start();
  try {
    await fn(worker, ended);
  } finally {
    await worker.close({ drainMs: 0 });
    await broker.close();
  }
}

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });

test("a success that cannot be stored fails the job without its image and frees the slot", async () => {
  const memory = createMemoryBroker();
  const { lines, log } = recordingLog();
  const { broker, calls } = intercept(memory, {
    finish: (delivery, outcome) =>
      outcome.type === "succeeded"
        ? Promise.reject(new ReplyError(OOM))
        : memory.finish(delivery, outcome),
  });
  await memory.submit({ id: "oom-1", owner: "ann", prompt: "too big to keep" });
  await withWorker(broker, { log }, async (worker, ended) => {
    await waitFor("the job failed", async () => (await memory.get("oom-1"))?.status === "failed");
    const job = await memory.get("oom-1", { image: true });
    assert.equal(job?.error, PROCESSING_ERROR);
    assert.equal(job?.image, undefined);
    assert.equal(calls("finish"), 2, "one refused success, then the failure, no retry loop");
    await waitFor("the slot freed", () => worker.active === 0);
    assert.deepEqual(ended, ["failed"]);
    const errors = lines.filter((line) => line.level === "error");
    assert.equal(errors.length, 1);
    assert.match(String(errors[0].properties.error), /OOM command not allowed/);
  });
});

test("a permanent error scheduling a retry fails the job after one provider call", async () => {
  const memory = createMemoryBroker();
  const provider = countingProvider({ fail: () => new RetryableError("xAI answered 500") });
  const { broker } = intercept(memory, {
    retryLater: () => Promise.reject(new ReplyError("ERR Error running script: broken")),
  });
  await memory.submit({ id: "retry-broken", owner: "ann", prompt: "p" });
  await withWorker(broker, { provider }, async (worker) => {
    await waitFor(
      "the job failed",
      async () => (await memory.get("retry-broken"))?.status === "failed",
    );
    assert.equal((await memory.get("retry-broken"))?.error, PROCESSING_ERROR);
    assert.equal(provider.calls, 1);
    await waitFor("the slot freed", () => worker.active === 0);
  });
});

test("when not even the failure can be stored, the slot is released and renewals stop", async () => {
  const memory = createMemoryBroker();
  const { lines, log } = recordingLog();
  const renewed: Delivery[][] = [];
  const { broker, calls } = intercept(memory, {
    finish: () => Promise.reject(new ReplyError(OOM)),
    renew: (consumer, deliveries) => {
      renewed.push(deliveries);
      return memory.renew(consumer, deliveries);
    },
  });
  await memory.submit({ id: "stuck", owner: "ann", prompt: "p" });
  await withWorker(broker, { log }, async (worker, ended) => {
    await waitFor("the slot released", () => calls("finish") === 2 && worker.active === 0);
    assert.equal((await memory.get("stuck"))?.status, "running", "left to its lease");
    assert.deepEqual(ended, ["abandoned"]);
    assert.equal(lines.filter((line) => line.level === "error").length, 2);
    await worker.maintain();
    assert.deepEqual(renewed.at(-1), [], "the released delivery is no longer renewed");
  });
});

test("a transient error storing a success is retried until it lands", async () => {
  const memory = createMemoryBroker();
  let refusals = 2;
  const { broker, calls } = intercept(memory, {
    finish: (delivery, outcome) =>
      refusals-- > 0
        ? Promise.reject(new BrokerUnavailableError("Cannot reach Redis: ECONNRESET"))
        : memory.finish(delivery, outcome),
  });
  await memory.submit({ id: "blip", owner: "ann", prompt: "p" });
  await withWorker(broker, {}, async (_worker, ended) => {
    await waitFor(
      "the job succeeded",
      async () => (await memory.get("blip"))?.status === "succeeded",
    );
    assert.equal(calls("finish"), 3);
    assert.deepEqual(ended, ["succeeded"]);
  });
});

const LOSSES: [LeaseStatus, string][] = [
  ["lost", "another consumer holds the entry"],
  [null, "the job is gone"],
];
for (const [found, why] of LOSSES) {
  test(`a renewal that finds ${why} aborts the provider call and writes nothing`, async () => {
    const memory = createMemoryBroker();
    const provider = countingProvider({ latencyMs: 60_000 });
    const { broker, calls } = intercept(memory, {
      renew: (_consumer, deliveries) => Promise.resolve(deliveries.map(() => found)),
    });
    await memory.submit({ id: "leased", owner: "ann", prompt: "p" });
    await withWorker(broker, { provider }, async (worker, ended) => {
      await waitFor("the provider called", () => provider.calls === 1);
      await worker.maintain();
      await waitFor("the slot freed", () => worker.active === 0);
      assert.deepEqual(ended, ["superseded"]);
      for (const write of ["finish", "retryLater", "deadLetter", "ack"] as const) {
        assert.equal(calls(write), 0, `${write} was called`);
      }
      assert.equal((await memory.get("leased"))?.status, "running");
    });
  });
}

test("a finish refused because the lease moved on counts as superseded", async () => {
  const memory = createMemoryBroker();
  const { broker } = intercept(memory, { finish: () => Promise.resolve(false) });
  await memory.submit({ id: "fenced", owner: "ann", prompt: "p" });
  await withWorker(broker, {}, async (worker, ended) => {
    await waitFor("the outcome counted", () => ended.length === 1 && worker.active === 0);
    assert.deepEqual(ended, ["superseded"]);
  });
});

test("entries whose Id is not a valid job id are dead-lettered unverified and never run", async () => {
  const memory = createMemoryBroker();
  const provider = countingProvider();
  const verified: string[] = [];
  const bad = ["bad id!", "x".repeat(129), "", "caf\u00e9", "a/b"];
  for (const id of bad) memory.addSeedEntry({ id, token: "tok", prompt: `prompt of ${id}` });
  const verifyToken = (token: string) => {
    verified.push(token);
    return Promise.resolve({ sub: "ann" });
  };
  await withWorker(memory, { provider, verifyToken }, async (worker) => {
    await waitFor("every entry dead-lettered", () => memory.deadLetters().length === bad.length);
    await waitFor("the slots freed", () => worker.active === 0);
    assert.deepEqual(memory.deadLetters().map((letter) => letter.jobId).sort(), [...bad].sort());
    assert.deepEqual(verified, []);
    assert.equal(provider.calls, 0);
    for (const id of bad.filter(Boolean)) assert.equal(await memory.get(id), null);
  });
});

test("two seed entries with the same Id call the provider once", async () => {
  const memory = createMemoryBroker();
  const provider = countingProvider({ latencyMs: 100 });
  const { broker, calls } = intercept(memory);
  memory.addSeedEntry({ id: "twice", token: "ann", prompt: "once only" });
  memory.addSeedEntry({ id: "twice", token: "ann", prompt: "once only" });
  await withWorker(broker, { provider }, async (worker) => {
    await waitFor("both entries handled", () => calls("finish") + calls("ack") === 2);
    await waitFor("the slots freed", () => worker.active === 0);
    assert.equal((await memory.get("twice"))?.status, "succeeded");
    assert.equal(provider.calls, 1);
    assert.equal((await memory.get("twice"))?.attempts, 1);
  });
});

test("a Retry-After of years schedules the retry within the cap", async () => {
  const memory = createMemoryBroker();
  const provider = countingProvider({
    fail: () => new RetryableError("xAI answered 429", { retryAfterMs: 99_999_999_000 }),
  });
  const delays: number[] = [];
  const { broker } = intercept(memory, {
    retryLater: (delivery, delayMs, reason) => {
      delays.push(delayMs);
      return memory.retryLater(delivery, delayMs, reason);
    },
  });
  await memory.submit({ id: "patient", owner: "ann", prompt: "p" });
  await withWorker(broker, { provider }, async () => {
    await waitFor("a retry scheduled", () => delays.length === 1);
    assert.equal(delays[0], MAX_RETRY_AFTER_MS);
  });
});

test("maintenance prunes consumers idle for ten leases, and never one idle under a minute", async () => {
  const memory = createMemoryBroker();
  const idles: number[] = [];
  const { broker, calls } = intercept(memory, {
    pruneConsumers: (idleMs) => {
      idles.push(idleMs);
      return Promise.resolve(0);
    },
  });
  await withWorker(broker, { leaseMs: 150 }, async () => {
    await waitFor("a prune", () => idles.length > 0);
    assert.ok(calls("renew") >= 10, `${calls("renew")} renewals before the first prune`);
    assert.ok(idles.every((ms) => ms >= 60_000), `${idles}`);
  });
});

test("a start that meets Redis away is retried, not left for a takeover a lease later", async () => {
  const memory = createMemoryBroker();
  let refusals = 2;
  const { broker, calls } = intercept(memory, {
    start: (delivery) =>
      refusals-- > 0
        ? Promise.reject(new BrokerUnavailableError("Cannot reach Redis: connection refused"))
        : memory.start(delivery),
  });
  await memory.submit({ id: "start-away", owner: "ann", prompt: "p" });
  // The lease is a minute and nothing takes over: only the retried start can run the job.
  await withWorker(broker, {}, async (_worker, ended) => {
    await waitFor(
      "the job succeeded",
      async () => (await memory.get("start-away"))?.status === "succeeded",
    );
    assert.equal(calls("start"), 3);
    assert.equal(calls("reclaim"), 0);
    assert.deepEqual(ended, ["succeeded"]);
  });
});

test("a renewal whose partition did not answer keeps the job running, and the other steps still run", async () => {
  const memory = createMemoryBroker();
  let gate!: () => void;
  const held = new Promise<void>((resolve) => gate = resolve);
  const provider = countingProvider({ gate: held });
  const { broker, calls } = intercept(memory, {
    renew: (_consumer, deliveries) => Promise.resolve(deliveries.map((): LeaseStatus => "unknown")),
    promoteDue: () => Promise.reject(new BrokerUnavailableError("Cannot reach Redis: down")),
  });
  await memory.submit({ id: "kept", owner: "ann", prompt: "p" });
  await withWorker(broker, { provider }, async (worker, ended) => {
    await waitFor("the job running", async () => (await memory.get("kept"))?.status === "running");
    await worker.maintain({ sweep: true });
    assert.ok(calls("reclaim") > 0, "a failed promotion skipped no takeover");
    gate();
    await waitFor(
      "the job succeeded",
      async () => (await memory.get("kept"))?.status === "succeeded",
    );
    assert.deepEqual(ended, ["succeeded"]);
    assert.equal(provider.calls, 1);
  });
});
