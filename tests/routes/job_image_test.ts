/** Tests of GET /v1/jobs/:id/image and the v1.1 fields of GET /v1/jobs/:id (urls, queue_position). */
import assert from "node:assert/strict";
import type { ImageProvider } from "../../lib/provider/grok.ts";
import {
  bearer,
  countingProvider,
  submitJob,
  type TestService,
  waitForStatus,
  withService,
} from "../support/app.ts";

const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC";
const GIF = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7";

/** A provider that answers `base64` and claims it is a PNG, whatever it is. */
function claimingPng(base64: string): ImageProvider {
  return { name: "claims-png", generate: () => Promise.resolve({ base64, mimeType: "image/png" }) };
}

/** A succeeded job of alice's: its id, her token and the submit answer. */
async function succeededJob(service: TestService) {
  const token = await service.token("alice");
  const { body } = await submitJob(service, token);
  await waitForStatus(service, token, body.id, ["succeeded"]);
  return { id: body.id as string, token, submitted: body };
}

Deno.test("GET /v1/jobs/:id/image answers the bytes with their type, a strong ETag and Cache-Control", async (t) => {
  await withService(async (service) => {
    const { id, token } = await succeededJob(service);
    const path = `/v1/jobs/${id}/image`;
    const response = await service.request(path, { headers: bearer(token) });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Content-Type"), "image/png");
    assert.equal(response.headers.get("Cache-Control"), "private");
    assert.equal(response.headers.get("Content-Security-Policy"), "default-src 'none'; sandbox");
    const etag = response.headers.get("ETag")!;
    assert.match(etag, /^"[^"]+"$/, "a strong ETag");
    assert.deepEqual(new Uint8Array(await response.arrayBuffer()), Uint8Array.fromBase64(PNG));
    for (const [name, header] of [["the same", etag], ["weak", `W/${etag}`], ["any", "*"]]) {
      await t.step(`304 for ${name} If-None-Match`, async () => {
        const again = await service.request(path, {
          headers: bearer(token, { "If-None-Match": `"other", ${header}` }),
        });
        assert.equal(again.status, 304);
        assert.equal(again.headers.get("ETag"), etag);
        assert.equal(again.headers.get("Cache-Control"), "private");
        assert.equal(await again.text(), "");
      });
    }
    await t.step("200 again for another ETag", async () => {
      const other = await service.request(path, {
        headers: bearer(token, { "If-None-Match": '"not-it"' }),
      });
      assert.equal(other.status, 200);
      assert.equal(other.headers.get("ETag"), etag, "the same image, the same ETag");
      await other.body?.cancel();
    });
  });
});

Deno.test("GET /v1/jobs/:id/image reads the media type from the bytes", async (t) => {
  const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46, 0, 1])
    .toBase64();
  for (const [name, base64, type] of [["JPEG", jpeg, "image/jpeg"], ["GIF", GIF, "image/gif"]]) {
    await t.step(`${name} bytes claimed as PNG`, async () => {
      await withService(async (service) => {
        const { id, token } = await succeededJob(service);
        const response = await service.request(`/v1/jobs/${id}/image`, { headers: bearer(token) });
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("Content-Type"), type);
        await response.body?.cancel();
      }, { provider: claimingPng(base64) });
    });
  }
});

Deno.test("GET /v1/jobs/:id/image takes the job's ticket, and refuses anyone else", async (t) => {
  await withService(async (service) => {
    const { id, token, submitted } = await succeededJob(service);
    const other = await succeededJob(service);
    const bob = await service.token("bob");
    const status = async (path: string, headers: Record<string, string> = {}) => {
      const response = await service.request(path, { headers });
      await response.body?.cancel();
      return response.status;
    };
    await t.step("the submit answer's image URL works without a token", async () => {
      assert.equal(await status(submitted.urls.image), 200);
    });
    await t.step("a ticket for another job: 404", async () => {
      const ticket = new URL(other.submitted.urls.image, "http://x").searchParams.get("ticket");
      assert.equal(await status(`/v1/jobs/${id}/image?ticket=${ticket}`), 404);
    });
    await t.step("a forged ticket or none: 401", async () => {
      assert.equal(await status(`/v1/jobs/${id}/image?ticket=eyJhbGciOiJIUzI1NiJ9.e30.x`), 401);
      assert.equal(await status(`/v1/jobs/${id}/image`), 401);
    });
    await t.step("another owner's token, an unknown or malformed id: 404", async () => {
      assert.equal(await status(`/v1/jobs/${id}/image`, bearer(bob)), 404);
      assert.equal(await status(`/v1/jobs/nope/image`, bearer(token)), 404);
      assert.equal(await status(`/v1/jobs/${"x".repeat(200)}/image`, bearer(token)), 404);
    });
  });
});

Deno.test("GET /v1/jobs/:id/image answers 404 until the job has succeeded", async () => {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  try {
    await withService(async (service) => {
      const token = await service.token("alice");
      const { body } = await submitJob(service, token);
      await waitForStatus(service, token, body.id, ["running"]);
      const early = await service.request(body.urls.image);
      assert.equal(early.status, 404);
      assert.equal((await early.json()).error.code, "not_found");
      open();
      await waitForStatus(service, token, body.id, ["succeeded"]);
      const later = await service.request(body.urls.image);
      assert.equal(later.status, 200);
      await later.body?.cancel();
    }, { provider: countingProvider({ gate }) });
  } finally {
    open();
  }
});

Deno.test("GET /v1/jobs/:id shows fresh urls, the image URL once succeeded, and queue_position while queued", async () => {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  try {
    await withService(async (service) => {
      const token = await service.token("alice");
      const get = async (id: string) =>
        await (await service.request(`/v1/jobs/${id}`, { headers: bearer(token) })).json();
      const running = (await submitJob(service, token, { prompt: "first" })).body.id;
      await waitForStatus(service, token, running, ["running"]);
      const second = (await submitJob(service, token, { prompt: "second" })).body.id;
      const third = (await submitJob(service, token, { prompt: "third" })).body.id;
      const [a, b, c] = [await get(running), await get(second), await get(third)];
      assert.equal(a.queue_position, undefined, "only while queued");
      assert.equal(b.status, "queued");
      assert.equal(b.queue_position, 0);
      assert.equal(c.queue_position, 1);
      for (const job of [a, b, c]) {
        assert.equal(job.urls.self, `/v1/jobs/${job.id}`);
        assert.match(job.urls.events, new RegExp(`^/v1/jobs/${job.id}/events\\?ticket=`));
        assert.match(job.urls.websocket, /^\/v1\/ws\?ticket=/);
        assert.equal(job.urls.image, undefined, "no image URL before success");
      }
      open();
      await waitForStatus(service, token, third, ["succeeded"]);
      const done = await get(third);
      assert.equal(done.queue_position, undefined);
      const image = await service.request(done.urls.image);
      assert.equal(image.status, 200);
      await image.body?.cancel();
    }, { provider: countingProvider({ gate }), env: { WORKER_CONCURRENCY: "1" } });
  } finally {
    open();
  }
});

Deno.test("GET /v1/jobs gives queue_position to the newest 10 queued jobs of a page, and asks for no more", async () => {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  try {
    await withService(async (service) => {
      const token = await service.token("alice");
      const running = (await submitJob(service, token, { prompt: "first" })).body.id;
      await waitForStatus(service, token, running, ["running"]);
      for (let i = 0; i < 14; i++) await submitJob(service, token, { prompt: `queued ${i}` });
      const broker = service.runtime.deps.broker;
      const asked = broker.queuePosition.bind(broker);
      let calls = 0;
      broker.queuePosition = (id: string) => (calls++, asked(id));
      const page = await (await service.request("/v1/jobs?limit=50", { headers: bearer(token) }))
        .json();
      assert.equal(page.data.length, 15);
      const positions = page.data.map((job: { queue_position?: number }) => job.queue_position);
      assert.deepEqual(positions.slice(0, 10), [13, 12, 11, 10, 9, 8, 7, 6, 5, 4], "newest first");
      assert.deepEqual(positions.slice(10), Array(5).fill(undefined));
      assert.equal(calls, 10, "one position read per job that shows one");
      open();
    }, { provider: countingProvider({ gate }), env: { WORKER_CONCURRENCY: "1" } });
  } finally {
    open();
  }
});
