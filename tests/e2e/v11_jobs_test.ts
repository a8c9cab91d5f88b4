/** End to end over Redis: GET /v1/jobs paging, `Prefer: wait` and GET /v1/jobs/:id/image. */
import assert from "node:assert/strict";
import { signToken } from "../support/app.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { transportTest } from "../support/transports.ts";
import { baseEnv, submit, waitForStatus } from "./e2e_helpers.ts";

/** `GET path` on `url` as `token`: the status and the JSON answer. */
async function get(url: string, path: string, token: string) {
  const res = await fetch(`${url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.json() };
}

transportTest(
  "GET /v1/jobs pages through 45 jobs with limit 20, none twice or skipped, while more arrive",
  async (t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai();
    const service = await startService(await baseEnv(via, redis, xai, { JOB_PARTITIONS: "2" }));
    try {
      const ann = await signToken("ann");
      const bob = await signToken("bob");
      const ids: string[] = [];
      for (let i = 0; i < 45; i++) {
        ids.push((await submit(service.url, ann, { prompt: `fox ${i}` })).body.id);
      }
      await submit(service.url, bob, { prompt: "an owl" });
      const seen: string[] = [];
      let cursor: string | null = null;
      let first: string | null = null;
      do {
        const query: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
        const page = await get(service.url, `/v1/jobs?limit=20${query}`, ann);
        assert.equal(page.status, 200, JSON.stringify(page.body));
        seen.push(...page.body.data.map((job: { id: string }) => job.id));
        cursor = page.body.next_cursor;
        first ??= cursor;
        // More jobs arrive between pages: they are newer, so no later page shows them.
        await Promise.all([1, 2, 3].map(() => submit(service.url, ann, { prompt: "late" })));
      } while (cursor !== null && seen.length < 200);
      assert.equal(new Set(seen).size, seen.length, "no job twice");
      assert.deepEqual(seen, [...ids].reverse(), "every job once, newest first");
      await t.step("another owner's cursor, or a changed one: 422", async () => {
        const theirs = await get(service.url, `/v1/jobs?limit=20&cursor=${first}`, bob);
        assert.equal(theirs.status, 422);
        const changed = `${first!.slice(0, -2)}${first!.endsWith("AA") ? "BB" : "AA"}`;
        const forged = await get(service.url, `/v1/jobs?limit=20&cursor=${changed}`, ann);
        assert.equal(forged.status, 422);
      });
    } finally {
      await service.stop();
      await xai.close();
      await redis.stop();
    }
  },
);

transportTest(
  "Prefer: wait answers the ended job or 202 in time, and the image is served with an ETag",
  async (t, via) => {
    const redis = await startRedis();
    const xai = await startFakeXai({ latencyMs: 100, image: "jpeg" });
    const service = await startService(await baseEnv(via, redis, xai));
    const waiting = (token: string, prefer: string, prompt: string) =>
      fetch(`${service.url}/v1/images`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, Prefer: prefer },
        body: JSON.stringify({ prompt }),
      });
    try {
      const ann = await signToken("ann");
      let id = "";
      await t.step("a job that ends in time: 200 with the job", async () => {
        const res = await waiting(ann, "wait=20", "a quick fox");
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("Preference-Applied"), "wait=20");
        const job = await res.json();
        assert.equal(job.status, "succeeded");
        assert.match(job.result.image, /^data:image\/jpeg;base64,/);
        id = job.id;
      });
      await t.step("a job that does not: 202 after the wait", async () => {
        xai.setLatency(5_000);
        const started = Date.now();
        const res = await waiting(ann, "wait=1", "a slow fox");
        assert.equal(res.status, 202);
        assert.ok(Date.now() - started >= 900);
        await waitForStatus(service.url, ann, (await res.json()).id, ["running", "succeeded"]);
      });
      await t.step("the image: bytes, type from the magic numbers, ETag and 304", async () => {
        const job = await get(service.url, `/v1/jobs/${id}`, ann);
        const res = await fetch(`${service.url}${job.body.urls.image}`);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("Content-Type"), "image/jpeg");
        assert.equal(res.headers.get("Cache-Control"), "private");
        const bytes = new Uint8Array(await res.arrayBuffer());
        assert.deepEqual([...bytes.subarray(0, 3)], [0xff, 0xd8, 0xff]);
        const again = await fetch(`${service.url}/v1/jobs/${id}/image`, {
          headers: { Authorization: `Bearer ${ann}`, "If-None-Match": res.headers.get("ETag")! },
        });
        assert.equal(again.status, 304);
        await again.body?.cancel();
      });
    } finally {
      await service.stop();
      await xai.close();
      await redis.stop();
    }
  },
);
