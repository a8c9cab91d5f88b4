/** Usage and quotas over HTTP: `usage` on jobs and events, GET /v1/usage, and 429 quota_exceeded. */
import assert from "node:assert/strict";
import type { ImageProvider } from "../../lib/provider/grok.ts";
import {
  bearer,
  countingProvider,
  readSse,
  startTestService,
  submitJob,
  waitForStatus,
} from "../support/app.ts";

const test = (name: string, fn: (t: Deno.TestContext) => Promise<void>) =>
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });

/** A provider that says each image cost 2 cents, as xAI's usage.cost_in_usd_ticks does. */
function costingProvider(gate?: Promise<void>): ImageProvider {
  const inner = countingProvider({ gate, holds: (prompt) => prompt.startsWith("hold") });
  return {
    name: "costing",
    async generate(request, options) {
      return { ...await inner.generate(request, options), costUsdTicks: 200_000_000 };
    },
  };
}

test("a job carries usage in GET, the listing and its terminal event; GET /v1/usage sums the day", async () => {
  const service = await startTestService({ provider: costingProvider() });
  try {
    const token = await service.token("meter");
    const { body } = await submitJob(service, token, { prompt: "a fox" });
    const job = await waitForStatus(service, token, body.id, ["succeeded"]);
    assert.deepEqual(job.usage, { images: 1, cost_usd: 0.02 });
    const list = await (await service.request("/v1/jobs", { headers: bearer(token) })).json();
    assert.deepEqual(list.data[0].usage, { images: 1, cost_usd: 0.02 });
    const events = await readSse(
      await service.request(`/v1/jobs/${body.id}/events`, { headers: bearer(token) }),
    );
    assert.deepEqual(JSON.parse(events.at(-1)!.data).usage, { images: 1, cost_usd: 0.02 });
    const usage = await (await service.request("/v1/usage", { headers: bearer(token) })).json();
    assert.deepEqual(usage, {
      day: new Date().toISOString().slice(0, 10),
      images: 1,
      cost_usd: 0.02,
      jobs: { succeeded: 1, failed: 0, canceled: 0 },
      quota: null,
    });
    const other = await service.request("/v1/usage", { headers: bearer(await service.token("x")) });
    assert.equal((await other.json()).images, 0, "the caller's own figures only");
    const old = await service.request("/v1/usage?day=2026-01-01", { headers: bearer(token) });
    assert.equal((await old.json()).images, 0);
  } finally {
    await service.close();
  }
});

test("GET /v1/usage answers 401 without a token and 422 for a day that is not one", async (t) => {
  const service = await startTestService();
  try {
    const token = await service.token("meter");
    const none = await service.request("/v1/usage");
    assert.equal(none.status, 401);
    await none.body?.cancel();
    for (const day of ["2026-02-30", "yesterday", "2026-1-1", "2026-12-06x"]) {
      await t.step(day, async () => {
        const res = await service.request(`/v1/usage?day=${day}`, { headers: bearer(token) });
        assert.equal(res.status, 422);
        assert.equal((await res.json()).error.code, "invalid_request");
      });
    }
  } finally {
    await service.close();
  }
});

test("MAX_IMAGES_PER_OWNER_PER_DAY: over it 429 quota_exceeded until the day ends; a canceled job gives its image back", async () => {
  const gate = Promise.withResolvers<void>();
  const service = await startTestService({
    provider: costingProvider(gate.promise),
    env: { MAX_IMAGES_PER_OWNER_PER_DAY: "2", WORKER_CONCURRENCY: "1" },
  });
  try {
    const token = await service.token("capped");
    const first = await submitJob(service, token, { prompt: "hold 1" });
    const second = await submitJob(service, token, { prompt: "hold 2" });
    assert.equal(first.response.status, 202);
    assert.equal(second.response.status, 202);
    const over = await submitJob(service, token, { prompt: "one too many" });
    assert.equal(over.response.status, 429);
    assert.equal(over.body.error.code, "quota_exceeded");
    const retryAfter = Number(over.response.headers.get("Retry-After"));
    const midnight = new Date();
    midnight.setUTCHours(24, 0, 0, 0);
    const toMidnight = (midnight.getTime() - Date.now()) / 1000;
    assert.ok(
      retryAfter >= 1 && Math.abs(retryAfter - toMidnight) <= 5,
      `Retry-After ${retryAfter}`,
    );
    const other = await submitJob(service, await service.token("other"), { prompt: "free" });
    assert.equal(other.response.status, 202, "another owner has its own quota");
    let usage = await (await service.request("/v1/usage", { headers: bearer(token) })).json();
    assert.deepEqual(usage.quota, { images_per_day: 2, remaining: 0 });
    // The second job waits behind the first (one slot): canceled, it gives its image back.
    const canceled = await service.request(`/v1/jobs/${second.body.id}`, {
      method: "DELETE",
      headers: bearer(token),
    });
    assert.equal(canceled.status, 202);
    usage = await (await service.request("/v1/usage", { headers: bearer(token) })).json();
    assert.deepEqual(usage.quota, { images_per_day: 2, remaining: 1 });
    assert.equal((await submitJob(service, token, { prompt: "fits again" })).response.status, 202);
    gate.resolve();
    await waitForStatus(service, token, first.body.id, ["succeeded"]);
    usage = await (await service.request("/v1/usage", { headers: bearer(token) })).json();
    assert.deepEqual(usage.jobs.canceled, 1);
    assert.deepEqual(usage.quota, { images_per_day: 2, remaining: 0 });
  } finally {
    gate.resolve();
    await service.close();
  }
});

test("a job of n images counts n in its usage and against the daily quota", async () => {
  const service = await startTestService({ env: { MAX_IMAGES_PER_OWNER_PER_DAY: "4" } });
  try {
    const token = await service.token("many");
    const { body } = await submitJob(service, token, { prompt: "three foxes", n: 3 });
    const job = await waitForStatus(service, token, body.id, ["succeeded"]);
    assert.deepEqual(job.usage, { images: 3, cost_usd: 0 });
    const over = await submitJob(service, token, { prompt: "two more", n: 2 });
    assert.equal(over.response.status, 429);
    assert.equal(over.body.error.code, "quota_exceeded");
    assert.equal(
      (await submitJob(service, token, { prompt: "one more", n: 1 })).response.status,
      202,
    );
    const usage = await (await service.request("/v1/usage", { headers: bearer(token) })).json();
    assert.deepEqual(usage.quota, { images_per_day: 4, remaining: 0 });
  } finally {
    await service.close();
  }
});
