/** A server-made id skips the existence check (one command less per job); a client's never does. */
import assert from "node:assert/strict";
import { redisCommand } from "../../support/redis_server.ts";
import { newJob } from "./broker_contract_helpers.ts";
import { redisBrokerFixture } from "./redis_fixture.ts";

/** How many EXISTS the server ran so far (script internals included). */
async function existsCalls(port: number): Promise<number> {
  const info = String(await redisCommand(port, ["INFO", "commandstats"]));
  return Number(info.match(/cmdstat_exists:calls=(\d+)/)?.[1] ?? 0);
}

Deno.test({
  name: "submit runs EXISTS for a client's id but not for a fresh server-made one",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fixture = await redisBrokerFixture("tcp", 1);
    const { broker, server } = fixture;
    try {
      await broker.init();
      const before = await existsCalls(server.port);
      const fresh = await broker.submit(newJob(), { freshId: true });
      assert.equal(fresh.created, true);
      assert.equal("fresh" in fresh.job, false, "fresh is a hint, not a field of the job");
      assert.equal(await existsCalls(server.port), before);
      const chosen = newJob();
      assert.equal((await broker.submit(chosen)).created, true);
      assert.equal(await existsCalls(server.port), before + 1);
      // A client's id that exists is found, as always.
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
