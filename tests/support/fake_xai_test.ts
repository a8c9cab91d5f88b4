/** Tests of the fake xAI itself: its rate limit, its usage field and the sliding-window count. */
import assert from "node:assert/strict";
import { type FakeXai, type FakeXaiOptions, maxInWindow, startFakeXai } from "./fake_xai.ts";

const AUTH = { authorization: "Bearer k", "content-type": "application/json" };

async function withFake(options: FakeXaiOptions, body: (fake: FakeXai) => Promise<void>) {
  const fake = await startFakeXai(options);
  try {
    await body(fake);
  } finally {
    await fake.close();
  }
}

function generate(
  fake: FakeXai,
  request: Record<string, unknown> = {},
  path = "generations",
): Promise<Response> {
  return fetch(`${fake.url}/images/${path}`, {
    method: "POST",
    headers: AUTH,
    body: JSON.stringify({ prompt: "a fox", response_format: "b64_json", ...request }),
  });
}

async function answers(fake: FakeXai, count: number): Promise<Response[]> {
  return await Promise.all(Array.from({ length: count }, () => generate(fake)));
}

Deno.test("the fake's rate limit answers 429 with Retry-After when its bucket is empty", async (t) => {
  await t.step("20 requests at once at 5 rps (burst 5): 5 accepted, 15 refused", async () => {
    await withFake({ rateLimit: { rps: 5 }, latencyMs: 50 }, async (fake) => {
      const responses = await answers(fake, 20);
      const statuses = responses.map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 200).length, 5);
      assert.equal(statuses.filter((s) => s === 429).length, 15);
      for (const response of responses) {
        const body = await response.json();
        if (response.status !== 429) continue;
        assert.ok(Number(response.headers.get("retry-after")) >= 1);
        assert.equal(typeof body.code, "string");
        assert.match(body.error, /rate limit/);
        assert.equal(response.headers.get("x-ratelimit-limit-requests"), null);
      }
      assert.equal(fake.accepted, 5);
      assert.equal(fake.rateLimited, 15);
      assert.equal(fake.calls, 20);
      assert.equal(fake.acceptedAt.length, 5);
    });
  });

  await t.step("the limit applies at arrival: refusals do not wait out the latency", async () => {
    await withFake({ rateLimit: { rps: 1 }, latencyMs: 1_000 }, async (fake) => {
      const first = generate(fake);
      await new Promise((resolve) => setTimeout(resolve, 20));
      const started = performance.now();
      const refused = await generate(fake);
      assert.equal(refused.status, 429);
      assert.ok(performance.now() - started < 500);
      await refused.body?.cancel();
      assert.equal((await first).status, 200);
      await (await first).body?.cancel();
    });
  });

  await t.step("tokens come back at rps, and the burst option sizes the bucket", async () => {
    await withFake({ rateLimit: { rps: 5, burst: 2 } }, async (fake) => {
      const statuses = (await answers(fake, 4)).map((r) => (r.body?.cancel(), r.status));
      assert.deepEqual(statuses.toSorted(), [200, 200, 429, 429]);
      await new Promise((resolve) => setTimeout(resolve, 500)); // 2.5 tokens, capped at 2
      const later = (await answers(fake, 3)).map((r) => (r.body?.cancel(), r.status));
      assert.deepEqual(later.toSorted(), [200, 200, 429]);
    });
  });

  await t.step("a paced client is never refused and stays within the limit", async () => {
    await withFake({ rateLimit: { rps: 20, burst: 1 } }, async (fake) => {
      for (let i = 0; i < 15; i++) {
        const response = await generate(fake);
        await response.body?.cancel();
        assert.equal(response.status, 200);
        await new Promise((resolve) => setTimeout(resolve, 55));
      }
      assert.equal(fake.rateLimited, 0);
      assert.ok(maxInWindow(fake.acceptedAt, 1_000) <= 20);
    });
  });

  await t.step("setRateLimit sets and removes the limit; headers are opt-in", async () => {
    await withFake({}, async (fake) => {
      assert.ok((await answers(fake, 6)).every((r) => (r.body?.cancel(), r.status === 200)));
      fake.setRateLimit({ rps: 2, headers: true });
      const limited = await answers(fake, 3);
      const refused = limited.find((r) => r.status === 429)!;
      assert.equal(refused.headers.get("x-ratelimit-limit-requests"), "2");
      assert.equal(refused.headers.get("x-ratelimit-remaining-requests"), "0");
      assert.match(refused.headers.get("x-ratelimit-reset-requests") ?? "", /^[\d.]+s$/);
      for (const response of limited) await response.body?.cancel();
      fake.setRateLimit(null);
      assert.ok((await answers(fake, 6)).every((r) => (r.body?.cancel(), r.status === 200)));
      assert.throws(() => fake.setRateLimit({ rps: 0 }), RangeError);
    });
  });

  await t.step("an injected fault waits for a request the bucket lets through", async () => {
    await withFake({ rateLimit: { rps: 1 } }, async (fake) => {
      fake.inject({ status: 500 });
      const [a, b] = [await generate(fake), await generate(fake)];
      await Promise.all([a.body?.cancel(), b.body?.cancel()]);
      assert.deepEqual([a.status, b.status], [500, 429]);
    });
  });
});

Deno.test("the fake's answers carry usage.cost_in_usd_ticks per image", async (t) => {
  await t.step("$0.02 (200,000,000 ticks) for one image by default", async () => {
    await withFake({}, async (fake) => {
      const body = await (await generate(fake)).json();
      assert.deepEqual(body.usage, { cost_in_usd_ticks: 200_000_000 });
      assert.equal(body.data.length, 1);
    });
  });

  await t.step("n images cost n times as much, and n items come back", async () => {
    await withFake({}, async (fake) => {
      const b64 = await (await generate(fake, { n: 3 })).json();
      assert.equal(b64.usage.cost_in_usd_ticks, 600_000_000);
      assert.equal(b64.data.length, 3);
      const urls = await (await generate(fake, { n: 2, response_format: "url" })).json();
      assert.equal(urls.data.length, 2);
      assert.notEqual(urls.data[0].url, urls.data[1].url);
      for (const item of urls.data) {
        const image = await fetch(item.url);
        assert.equal(image.status, 200);
        await image.body?.cancel();
      }
    });
  });

  await t.step("costTicksPerImage and setCostTicksPerImage change the price", async () => {
    await withFake({ costTicksPerImage: 400_000_000 }, async (fake) => {
      assert.equal((await (await generate(fake)).json()).usage.cost_in_usd_ticks, 400_000_000);
      fake.setCostTicksPerImage(1);
      assert.equal((await (await generate(fake, { n: 2 })).json()).usage.cost_in_usd_ticks, 2);
      assert.throws(() => fake.setCostTicksPerImage(-1), RangeError);
    });
  });

  await t.step(
    "POST /v1/images/edits answers like generations and is recorded as edits",
    async () => {
      await withFake({}, async (fake) => {
        const images = [{ url: "https://example.com/a.jpg", type: "image_url" }];
        const body = await (await generate(fake, { images }, "edits")).json();
        assert.equal(body.usage.cost_in_usd_ticks, 200_000_000);
        assert.equal(fake.requests[0].endpoint, "edits");
        assert.equal(fake.accepted, 1);
      });
    },
  );
});

Deno.test("maxInWindow counts the most timestamps within any window", async (t) => {
  await t.step("an empty list counts 0", () => assert.equal(maxInWindow([], 1_000), 0));
  await t.step("the window is half-open: t and t + windowMs are apart", () => {
    assert.equal(maxInWindow([0, 1_000, 2_000], 1_000), 1);
    assert.equal(maxInWindow([0, 999, 1_998], 1_000), 2);
  });
  await t.step("unsorted input is counted as sorted", () => {
    assert.equal(maxInWindow([2_500, 0, 2_100, 100, 2_900, 200, 2_200], 1_000), 4);
  });
  await t.step("a burst then a steady pace", () => {
    const times = [0, 0, 0, ...Array.from({ length: 10 }, (_, i) => 1_000 + i * 200)];
    assert.equal(maxInWindow(times, 1_000), 5);
    assert.equal(maxInWindow(times, 1_001), 6);
  });
  await t.step("a window must be positive", () => {
    assert.throws(() => maxInWindow([1], 0), RangeError);
  });
});
