/** The journal of jobs created here: complete logs only, dropped on a gap, an end, a refusal or age. */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { Journal } from "../../../lib/live/journal.ts";
import type { Notification, StoredEvent } from "../../../lib/live/notifications.ts";
import { Relay } from "../../../lib/live/relay.ts";
import type { Broker, FeedItem, LocalJob } from "../../../lib/queue/types.ts";
import { redisBrokerFixture } from "../queue/redis_fixture.ts";

const at = "2026-11-24T12:00:00.000Z";

function local(id: string, created: Promise<boolean>): LocalJob {
  const notification: Notification = { id, type: "queued", success: true, at };
  return { id, owner: "ann", queued: { eventId: "1", notification }, created };
}

function item(jobId: string, eventId: string, type: "started" | "failed" = "started"): FeedItem {
  const notification = type === "started"
    ? { id: jobId, type, success: true as const, at }
    : { id: jobId, type, success: false as const, error: "no", at };
  const previousId = String(Number(eventId) - 1);
  return {
    jobId,
    owner: "ann",
    cursor: `${eventId}-0`,
    partition: 0,
    eventId,
    previousId,
    notification,
  };
}

const ids = (events: StoredEvent[] | undefined) => events?.map((e) => e.eventId);

Deno.test("a job's log is offered once the store created it, with the feed items that follow on", async () => {
  const journal = new Journal();
  const created = Promise.withResolvers<boolean>();
  journal.opening(local("a", created.promise));
  journal.record(item("a", "2"));
  assert.equal(journal.replay("a"), undefined, "not before the store answered");
  created.resolve(true);
  await created.promise;
  journal.record(item("a", "2"));
  assert.deepEqual(ids(journal.replay("a")?.events), ["1", "2"]);
  assert.equal(journal.replay("a")?.owner, "ann");
});

Deno.test("a log is dropped on a gap, an end, or when the store did not create the job", async () => {
  const journal = new Journal();
  for (const id of ["gap", "end", "refused"]) {
    journal.opening(local(id, Promise.resolve(id !== "refused")));
  }
  await Promise.resolve();
  journal.record(item("gap", "3"));
  journal.record(item("end", "2", "failed"));
  assert.equal(journal.replay("gap"), undefined);
  assert.equal(journal.replay("end"), undefined);
  assert.equal(journal.replay("refused"), undefined);
  assert.equal(journal.size, 0);
});

Deno.test("the journal keeps at most its bound of jobs, and none past its age", async () => {
  const journal = new Journal({ maxJobs: 2, maxAgeMs: 1_000 });
  journal.opening(local("a", Promise.resolve(true)), 0);
  journal.opening(local("b", Promise.resolve(true)), 10);
  journal.opening(local("c", Promise.resolve(true)), 20);
  await Promise.resolve();
  assert.equal(journal.replay("a", 20), undefined);
  assert.deepEqual(ids(journal.replay("b", 20)?.events), ["1"]);
  assert.equal(journal.replay("c", 1_020), undefined);
});

/** The broker, counting the reads of whole logs. */
function counting(broker: Broker) {
  const reads = { history: 0 };
  const wrapped = new Proxy(broker, {
    get(target, name, receiver) {
      if (name === "history") reads.history++;
      const value = Reflect.get(target, name, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { broker: wrapped, reads };
}

Deno.test({
  name: "a subscriber of a job created in this process gets its events without a read of its log",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fixture = await redisBrokerFixture("tcp", 1);
    const { broker, reads } = counting(fixture.broker);
    const relay = new Relay({ broker, log: getLogger(["imagejobs", "test"]), blockMs: 200 });
    try {
      await broker.init();
      await relay.start();
      await broker.submit({ id: "here", owner: "ann", prompt: "a fox" });
      await assert.rejects(
        relay.subscribe("here", { event: () => assert.fail("not bob's") }, undefined, {
          owner: "bob",
        }),
        /no such job/,
      );
      const seen: string[] = [];
      const ended = Promise.withResolvers<string>();
      const sink = { event: (e: StoredEvent) => seen.push(e.eventId), done: ended.resolve };
      await relay.subscribe("here", sink, undefined, { owner: "ann" });
      assert.deepEqual(seen, (await fixture.broker.events("here")).map((e) => e.eventId));
      assert.equal(seen.length, 1);
      const [delivery] = await broker.claim("w", 1, { blockMs: 1_000 });
      await broker.start(delivery);
      await broker.finish(delivery, { type: "failed", error: "no" });
      assert.equal(await ended.promise, "terminal");
      assert.equal(reads.history, 0);
      assert.deepEqual(seen, (await fixture.broker.events("here")).map((e) => e.eventId));
      assert.equal(seen.length, 3);
    } finally {
      await relay.close();
      await fixture.cleanup();
    }
  },
});
