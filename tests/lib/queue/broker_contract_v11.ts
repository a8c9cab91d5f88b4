/** The broker contract's v1.1 part: owners' job listings, queue positions, feed replay, webhook outbox. */
import assert from "node:assert/strict";
import type { Broker, JobRecord } from "../../../lib/queue/types.ts";
import {
  claimJob,
  type ContractTest,
  newJob,
  sameStreamJobs,
  SUCCESS,
  tailUntil,
} from "./broker_contract_helpers.ts";

/** Every job of the owner, page by page, with `limit` per page. */
async function listAll(broker: Broker, owner: string, limit: number, status?: JobRecord["status"]) {
  const ids: string[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const page = await broker.list(owner, { limit, status, cursor });
    assert.ok(page.jobs.length <= limit);
    ids.push(...page.jobs.map((job) => job.id));
    if (page.next === null) return ids;
    cursor = page.next;
  }
  throw new Error("Cannot list: more than 100 pages");
}

/** Registers the v1.1 tests of the broker contract. */
export function v11Contract(test: ContractTest): void {
  test("list pages through an owner's jobs newest first, none twice or skipped", async (broker) => {
    const made: string[] = [];
    for (let i = 0; i < 7; i++) {
      const job = newJob({ owner: "ann", id: `ann-${i}-${crypto.randomUUID()}` });
      await broker.submit(job);
      made.push(job.id);
      await broker.submit(newJob({ owner: "bob" }));
    }
    const first = await broker.list("ann", { limit: 3 });
    assert.equal(first.jobs.length, 3);
    assert.ok(first.next);
    // Submits after the first page never shift the later pages.
    await broker.submit(newJob({ owner: "ann" }));
    const ids = [...first.jobs.map((job) => job.id)];
    let cursor: string | null = first.next;
    while (cursor !== null) {
      const page = await broker.list("ann", { limit: 3, cursor });
      ids.push(...page.jobs.map((job) => job.id));
      cursor = page.next;
    }
    assert.deepEqual(ids, [...made].reverse());
    for (const job of first.jobs) assert.equal(job.owner, "ann");
    assert.equal((await listAll(broker, "bob", 100)).length, 7);
    assert.deepEqual(await broker.list("nobody", { limit: 5 }), { jobs: [], next: null });
  });

  test("list filters by status and refuses a malformed cursor", async (broker) => {
    // Jobs made in the same millisecond are ordered by id: these ids sort in submit order.
    const jobs = [0, 1, 2].map((i) => newJob({ id: `${i}-${crypto.randomUUID()}` }));
    for (const job of jobs) await broker.submit({ ...job, owner: "cat" });
    const delivery = await claimJob(broker, jobs[0].id);
    await broker.start(delivery);
    await broker.finish(delivery, SUCCESS);
    assert.deepEqual(await listAll(broker, "cat", 1, "succeeded"), [jobs[0].id]);
    assert.deepEqual(await listAll(broker, "cat", 1, "queued"), [jobs[2].id, jobs[1].id]);
    assert.deepEqual(await listAll(broker, "cat", 2, "failed"), []);
    await assert.rejects(
      () => broker.list("cat", { limit: 2, cursor: "not a cursor!" }),
      RangeError,
    );
  });

  test("queuePosition counts the jobs ahead of a queued job, and null once it runs", async (broker) => {
    const jobs = sameStreamJobs(broker, 3);
    for (const job of jobs) await broker.submit(job);
    const positions = await Promise.all(jobs.map((job) => broker.queuePosition(job.id)));
    // One partition counts exactly; with N the estimate scales by N (see the README).
    assert.deepEqual(positions, [0, 1, 2].map((n) => n * broker.partitions));
    const delivery = await claimJob(broker, jobs[0].id);
    await broker.start(delivery);
    assert.equal(await broker.queuePosition(jobs[0].id), null);
    assert.equal(await broker.queuePosition(jobs[1].id), 0);
    assert.equal(await broker.queuePosition("no-such-job"), null);
  });

  test("replay returns the feed items after a cursor, and null for a malformed one", async (broker) => {
    const { cursor } = await broker.tail(null, { blockMs: 0 });
    const job = newJob({ owner: "dan" });
    await broker.submit(job);
    const delivery = await claimJob(broker, job.id);
    await broker.start(delivery);
    await tailUntil(broker, cursor, job.id, 2);
    const replayed = await broker.replay(cursor, 100);
    assert.ok(replayed);
    const mine = replayed.items.filter((item) => item.jobId === job.id);
    assert.deepEqual(mine.map((item) => item.notification.type), ["queued", "started"]);
    assert.ok(mine.every((item) => item.owner === "dan"));
    // From the returned cursor there is nothing more; from the first item's, only the second.
    assert.deepEqual((await broker.replay(replayed.cursor, 100))?.items, []);
    assert.equal(await broker.replay("garbage", 10), null);
    // A cursor past the end of the feed was never handed out: null, so the client starts over.
    const ahead = replayed.cursor.split(",").map(() => "99999999999999-0").join(",");
    assert.equal(await broker.replay(ahead, 10), null);
    assert.equal(await broker.replay(`${cursor},${cursor},x`, 10), null);
  });

  test("the webhook outbox holds the deliveries a job asked for until done", async (broker) => {
    const job = newJob({
      webhook: "https://hooks.example/in",
      webhookEvents: ["queued", "succeeded"],
    });
    await broker.submit(job);
    await broker.submit(newJob()); // no webhook: nothing in the outbox
    const stored = await broker.get(job.id);
    assert.equal(stored?.webhook, job.webhook);
    assert.deepEqual(stored?.webhookEvents, ["queued", "succeeded"]);
    const now = Date.now();
    const [queued, ...none] = await broker.webhooks.take(now, 10, 60_000);
    assert.deepEqual(none, []);
    const [first] = await broker.events(job.id);
    assert.deepEqual([queued.jobId, queued.type, queued.eventId, queued.attempt], [
      job.id,
      "queued",
      first.eventId,
      0,
    ]);
    // Taken: hidden for its lease, from every process.
    assert.deepEqual(await broker.webhooks.take(now, 10, 60_000), []);
    await broker.webhooks.retry(queued, now - 1);
    const [again] = await broker.webhooks.take(now, 10, 60_000);
    assert.deepEqual([again.type, again.eventId, again.attempt], ["queued", first.eventId, 1]);
    await broker.webhooks.done(again);
    const delivery = await claimJob(broker, job.id);
    await broker.start(delivery); // `started` was not asked for
    await broker.finish(delivery, SUCCESS);
    const [succeeded, ...rest] = await broker.webhooks.take(Date.now() + 1, 10, 60_000);
    assert.deepEqual(rest, []);
    assert.deepEqual([succeeded.type, succeeded.attempt], ["succeeded", 0]);
    // A 410: the job's webhook is forgotten, so what is still pending is dropped when due.
    await broker.webhooks.retry(succeeded, 0);
    await broker.webhooks.stop(job.id);
    assert.equal((await broker.get(job.id))?.webhook, undefined);
  });

  test("each job end leaves one Socket.IO notice, with its event id, until done", async (broker) => {
    const notices = broker.notices;
    assert.ok(notices, "the contract's brokers are created with notices");
    const ok = newJob();
    const canceled = newJob();
    await broker.submit(ok);
    await broker.submit(canceled);
    // Neither queued nor started leaves a notice.
    assert.deepEqual(await notices.take(Date.now() + 1, 10, 60_000), []);
    const delivery = await claimJob(broker, ok.id);
    await broker.start(delivery);
    assert.equal(await broker.finish(delivery, SUCCESS), true);
    await broker.finish(delivery, SUCCESS); // run twice (a resend): no second notice
    assert.equal(await broker.cancel(canceled.id), "canceled");
    assert.equal(await broker.cancel(canceled.id), "ended");
    const taken = await notices.take(Date.now() + 1, 10, 60_000);
    const seen = taken.map((t) => [t.jobId, t.type, t.attempt]).sort();
    assert.deepEqual(seen, [[ok.id, "succeeded", 0], [canceled.id, "canceled", 0]].sort());
    for (const task of taken) {
      const last = (await broker.events(task.jobId)).at(-1)!;
      assert.equal(task.eventId, last.eventId);
    }
    // Taken: hidden for its lease; retried: due again, its attempt counted; done: gone.
    assert.deepEqual(await notices.take(Date.now() + 1, 10, 60_000), []);
    await notices.retry(taken[0], 0);
    const [again] = await notices.take(Date.now() + 1, 10, 60_000);
    assert.deepEqual([again.jobId, again.eventId, again.attempt], [
      taken[0].jobId,
      taken[0].eventId,
      1,
    ]);
    await notices.done(again);
    await notices.done(taken[1]);
    assert.deepEqual(await notices.take(Date.now() + 120_000, 10, 60_000), []);
  });
}
