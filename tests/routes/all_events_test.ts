/** Tests of GET /v1/events: every job of the caller on one stream, resumable by cursor. */
import assert from "node:assert/strict";
import {
  bearer,
  countingProvider,
  submitJob,
  type TestService,
  until,
  waitForStatus,
  withService,
} from "../support/app.ts";
import { type SseBlock, SseReader } from "./sse_reader.ts";

/** Opens the stream as `token` (with extra headers) and checks that it is one. */
async function open(
  service: TestService,
  token: string,
  headers: Record<string, string> = {},
  path = "/v1/events",
): Promise<SseReader> {
  const response = await service.request(path, { headers: bearer(token, headers) });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("Content-Type") ?? "", /^text\/event-stream/);
  return new SseReader(response);
}

/** Submits `count` jobs as `token` and returns their ids. */
async function submitMany(service: TestService, token: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    ids.push((await submitJob(service, token, { prompt: `fox ${i}` })).body.id);
  }
  return ids;
}

/** `[job id, type]` of each event, checking that each `data:` is that notification. */
function pairs(blocks: SseBlock[]): [string, string][] {
  return blocks.map((block) => {
    const notification = JSON.parse(block.data);
    assert.equal(notification.type, block.event);
    assert.ok(block.id, "every event has a cursor");
    return [notification.id, notification.type];
  });
}

/** The events each job should have, in order. */
function lifecycles(ids: string[]): string[] {
  return ids.flatMap((id) => ["queued", "started", "succeeded"].map((type) => `${id} ${type}`));
}

/** The events sorted by job (order within a job kept), as `id type` lines. */
function byJob(blocks: SseBlock[], ids: string[]): string[] {
  const lines = pairs(blocks).map(([id, type]) => `${id} ${type}`);
  return ids.flatMap((id) => lines.filter((line) => line.startsWith(`${id} `)));
}

Deno.test("GET /v1/events streams every job of the caller, and only the caller's", async () => {
  await withService(async (service) => {
    const alice = await service.token("alice");
    const bob = await service.token("bob");
    const stream = await open(service, alice);
    try {
      await submitMany(service, bob, 1);
      const ids = await submitMany(service, alice, 3);
      const blocks = await stream.take(9);
      assert.deepEqual(byJob(blocks, ids), lifecycles(ids));
      assert.equal(new Set(blocks.map((b) => b.id)).size, 9, "every cursor differs");
      for (const block of blocks.filter((b) => b.event === "succeeded")) {
        const { data } = JSON.parse(block.data);
        assert.match(data.image, /^data:image\/png;base64,[A-Za-z0-9+/]+=*$/);
        assert.equal(data.mime_type, "image/png");
      }
      await submitMany(service, bob, 1);
      const [last] = await submitMany(service, alice, 1);
      const next = await stream.take(3);
      assert.deepEqual(pairs(next).map(([id]) => id), [last, last, last], "nothing of bob's");
    } finally {
      await stream.cancel();
    }
    await until(() => service.runtime.relay!.size === 0, "the stream's subscription to end");
  });
});

Deno.test("GET /v1/events resumes after Last-Event-ID with only the missed events, then goes live", async (t) => {
  await withService(async (service) => {
    const alice = await service.token("alice");
    const first = await open(service, alice);
    const [early] = await submitMany(service, alice, 1);
    const seen = await first.take(3);
    assert.deepEqual(byJob(seen, [early]), lifecycles([early]));
    await first.cancel();
    const missed = await submitMany(service, alice, 2);
    for (const id of missed) await waitForStatus(service, alice, id, ["succeeded"]);
    for (
      const [name, headers, path] of [
        ["the Last-Event-ID header", { "Last-Event-ID": seen[2].id! }, "/v1/events"],
        [
          "the last_event_id query",
          {},
          `/v1/events?last_event_id=${encodeURIComponent(seen[2].id!)}`,
        ],
      ] as const
    ) {
      await t.step(name, async () => {
        const resumed = await open(service, alice, headers, path);
        try {
          const replayed = await resumed.take(missed.length * 3);
          assert.deepEqual(byJob(replayed, missed), lifecycles(missed));
          const [live] = await submitMany(service, alice, 1);
          const after = await resumed.take(3);
          assert.deepEqual(byJob(after, [live]), lifecycles([live]), "live, nothing repeated");
          missed.push(live);
        } finally {
          await resumed.cancel();
        }
      });
    }
    await t.step("from the middle of the replay: only what came after it", async () => {
      const all = await open(service, alice, { "Last-Event-ID": seen[2].id! });
      const replayed = await all.take(12);
      await all.cancel();
      const resumed = await open(service, alice, { "Last-Event-ID": replayed[7].id! });
      const rest = await resumed.take(4);
      await resumed.cancel();
      assert.deepEqual(rest.map((b) => b.id), replayed.slice(8).map((b) => b.id));
    });
  });
});

Deno.test("GET /v1/events starts with event: reset when it cannot resume, then goes live", async (t) => {
  await withService(async (service) => {
    const alice = await service.token("alice");
    for (const garbage of ["garbage", "1-2-3", "x".repeat(2000)]) {
      await t.step(`Last-Event-ID ${garbage.slice(0, 20)}`, async () => {
        const stream = await open(service, alice, { "Last-Event-ID": garbage });
        try {
          const first = await stream.next();
          assert.equal(first?.event, "reset");
          assert.deepEqual(JSON.parse(first!.data), { type: "reset" });
          assert.equal(first?.id, undefined, "a reset keeps the client's old cursor");
          const [id] = await submitMany(service, alice, 1);
          assert.deepEqual(byJob(await stream.take(3), [id]), lifecycles([id]));
        } finally {
          await stream.cancel();
        }
      });
    }
  });
});

Deno.test("GET /v1/events takes a bearer token only, and counts against the owner's streams", async (t) => {
  await withService(async (service) => {
    const alice = await service.token("alice");
    const { body } = await submitJob(service, alice);
    const ticket = new URL(body.urls.events, "http://x").searchParams.get("ticket");
    await t.step("a ticket or nothing: 401", async () => {
      for (const path of [`/v1/events?ticket=${ticket}`, "/v1/events"]) {
        const response = await service.request(path);
        assert.equal(response.status, 401);
        assert.equal((await response.json()).error.code, "unauthorized");
      }
    });
    await t.step("over MAX_STREAMS_PER_OWNER: 429", async () => {
      const streams = [await open(service, alice), await open(service, alice)];
      const third = await service.request("/v1/events", { headers: bearer(alice) });
      assert.equal(third.status, 429);
      assert.ok(third.headers.get("Retry-After"));
      await third.body?.cancel();
      await Promise.all(streams.map((stream) => stream.cancel()));
      await until(() => service.runtime.deps.streams.count("alice") === 0, "slots to free");
      const again = await open(service, alice);
      await again.cancel();
    });
  }, { env: { MAX_STREAMS_PER_OWNER: "2" }, provider: countingProvider() });
});

Deno.test("GET /v1/events sends keepalive comments while idle", async () => {
  await withService(async (service) => {
    const alice = await service.token("alice");
    const response = await service.request("/v1/events", { headers: bearer(alice) });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    try {
      let text = "";
      while (!text.includes(": keepalive\n\n")) {
        const { done, value } = await reader.read();
        assert.ok(!done, "the stream stays open");
        text += value;
      }
    } finally {
      await reader.cancel();
    }
  }, { env: { SSE_KEEPALIVE_MS: "100" } });
});

Deno.test("GET /v1/events cuts off a stalled stream without holding back another owner's", async () => {
  await withService(async (service) => {
    const alice = await service.token("alice");
    const bob = await service.token("bob");
    const relay = service.runtime.relay!;
    const stalled = await service.request("/v1/events", { headers: bearer(alice) });
    const reading = await open(service, bob);
    try {
      await submitMany(service, alice, 8);
      const [id] = await submitMany(service, bob, 1);
      assert.deepEqual(byJob(await reading.take(3), [id]), lifecycles([id]));
      await until(() => relay.size === 1, "the stalled stream to be cut off");
      assert.equal(service.runtime.deps.streams.count("alice"), 0, "its slot is free");
      await assert.rejects(stalled.text(), "the stalled stream ended in an error");
    } finally {
      await reading.cancel();
    }
  }, { env: { SSE_MAX_BUFFERED_BYTES: "1024" } });
});
