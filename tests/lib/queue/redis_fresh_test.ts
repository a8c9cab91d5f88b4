/** Submits never reset an existing job, and the owner's index expiry is renewed at most once a minute. */
import assert from "node:assert/strict";
import { redisCommand } from "../../support/redis_server.ts";
import { claimJob, newJob } from "./broker_contract_helpers.ts";
import { redisBrokerFixture } from "./redis_fixture.ts";

Deno.test({
  name:
    "a CREATE run twice never resets a job, a server-made id's included (a resend answers the job)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fixture = await redisBrokerFixture("tcp", 1);
    const { broker } = fixture;
    try {
      await broker.init();
      const job = newJob();
      const fresh = await broker.submit(job, { freshId: true });
      assert.equal(fresh.created, true);
      assert.equal("fresh" in fresh.job, false, "fresh is a hint, not a field of the job");
      const delivery = await claimJob(broker, job.id);
      await broker.start(delivery);
      // The same CREATE again, as ioredis resends an unanswered command after a reconnect.
      const again = await broker.submit(job, { freshId: true });
      assert.equal(again.created, false);
      assert.equal(again.job.status, "running");
      assert.equal((await broker.get(job.id))?.status, "running");
      assert.deepEqual((await broker.events(job.id)).map((e) => e.notification.type), [
        "queued",
        "started",
      ]);
      const chosen = newJob();
      assert.equal((await broker.submit(chosen)).created, true);
      assert.equal((await broker.submit(chosen)).created, false);
    } finally {
      await fixture.cleanup();
    }
  },
});

Deno.test({
  name:
    "the owner's index gets its expiry with the owner's first submit, then at most once a minute",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fixture = await redisBrokerFixture("tcp", 1);
    const { broker, server, prefix } = fixture;
    const expires = async () => {
      const info = String(await redisCommand(server.port, ["INFO", "commandstats"]));
      return Number(info.match(/cmdstat_expire:calls=(\d+)/)?.[1] ?? 0);
    };
    try {
      await broker.init();
      const before = await expires();
      await broker.submit(newJob({ owner: "olga" }));
      assert.equal(await expires(), before + 1);
      const ttl = Number(await redisCommand(server.port, ["TTL", `${prefix}owner:olga:jobs`]));
      assert.ok(ttl > 86_400, `index ttl ${ttl}`);
      await broker.submit(newJob({ owner: "olga" }));
      await broker.submit(newJob({ owner: "olga" }));
      assert.equal(await expires(), before + 1, "no EXPIRE for the owner's next submits");
      await broker.submit(newJob({ owner: "pete" }));
      assert.equal(await expires(), before + 2, "another owner's first submit sets its own");
    } finally {
      await fixture.cleanup();
    }
  },
});
