/** End to end over Redis: GET /v1/events across two processes and two partitions, resumed by cursor. */
import assert from "node:assert/strict";
import { signToken } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { transportTest } from "../support/transports.ts";
import { type SseBlock, SseReader } from "../routes/sse_reader.ts";
import { baseEnv, submit, waitForStatus } from "./e2e_helpers.ts";

/** Opens GET /v1/events on `url` as `token`, resuming after `last` when given. */
async function events(url: string, token: string, last?: string): Promise<SseReader> {
  const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
  if (last !== undefined) headers["Last-Event-ID"] = last;
  const response = await fetch(`${url}/v1/events`, { headers });
  assert.equal(response.status, 200);
  return new SseReader(response);
}

/** Submits `count` jobs and returns their ids. */
async function submitMany(url: string, token: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const { status, body } = await submit(url, token, { prompt: `fox ${i}` });
    assert.equal(status, 202);
    ids.push(body.id);
  }
  return ids;
}

/** `id type` lines grouped by job in the order of `ids` (each job's own order kept). */
function byJob(blocks: SseBlock[], ids: string[]): string[] {
  const lines = blocks.map((block) => {
    const notification = JSON.parse(block.data);
    assert.equal(notification.type, block.event);
    return `${notification.id} ${notification.type}`;
  });
  return ids.flatMap((id) => lines.filter((line) => line.startsWith(`${id} `)));
}

function lifecycles(ids: string[]): string[] {
  return ids.flatMap((id) => ["queued", "started", "succeeded"].map((type) => `${id} ${type}`));
}

transportTest(
  "GET /v1/events resumes on another process with only the missed events, over two partitions",
  async (t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 50 });
    const env = await baseEnv(via, redis, xai, { JOB_PARTITIONS: "2" });
    const [a, b] = await Promise.all([startService(env), startService(env)]);
    try {
      const ann = await signToken("ann");
      const bob = await signToken("bob");
      const first = await events(a.url, ann);
      await submitMany(a.url, bob, 2);
      const early = await submitMany(a.url, ann, 3);
      const seen = await first.take(9, 20_000);
      assert.deepEqual(byJob(seen, early), lifecycles(early));
      for (const block of seen) assert.equal(block.id!.split(",").length, 2, "a vector cursor");
      const success = JSON.parse(seen.find((b) => b.event === "succeeded")!.data);
      assert.match(success.data.image, /^data:image\/png;base64,/);
      await first.cancel();

      const missed = await submitMany(b.url, ann, 2);
      await submitMany(b.url, bob, 1);
      for (const id of missed) await waitForStatus(b.url, ann, id, ["succeeded"]);
      await t.step("on the other process: the missed events, then live ones", async () => {
        const resumed = await events(b.url, ann, seen.at(-1)!.id);
        try {
          assert.deepEqual(byJob(await resumed.take(6, 20_000), missed), lifecycles(missed));
          const [live] = await submitMany(a.url, ann, 1);
          assert.deepEqual(byJob(await resumed.take(3, 20_000), [live]), lifecycles([live]));
        } finally {
          await resumed.cancel();
        }
      });
      await t.step("a cursor it cannot follow: reset first", async () => {
        const reset = await events(a.url, ann, "garbage");
        try {
          assert.equal((await reset.next(20_000))?.event, "reset");
        } finally {
          await reset.cancel();
        }
      });
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await xai.close();
      await redis.stop();
    }
  },
);
