/** Tests of GET /v1/jobs/:id/events: replay, resume, tickets, live delivery and keepalives. */
import assert from "node:assert/strict";
import { PermanentError } from "../../lib/errors.ts";
import { compareEventIds } from "../../lib/live/notifications.ts";
import {
  bearer,
  countingProvider,
  readSse,
  startTestService,
  submitJob,
  type TestService,
  waitForStatus,
  withService,
} from "../support/app.ts";

type SseEvent = Awaited<ReturnType<typeof readSse>>[number];

/** Submits a job for `sub` and waits for it to end; returns its id, token and submit body. */
async function finishedJob(service: TestService, sub = "alice") {
  const token = await service.token(sub);
  const { body } = await submitJob(service, token);
  await waitForStatus(service, token, body.id, ["succeeded", "failed", "canceled"]);
  return { id: body.id as string, token, submitted: body };
}

/** Reads a whole SSE stream, failing (instead of hanging) when it stays open past `ms`. */
async function stream(
  service: TestService,
  path: string,
  headers: Record<string, string> = {},
  { ms = 10_000 }: { ms?: number } = {},
): Promise<SseEvent[]> {
  const response = await service.request(path, { headers });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("Content-Type") ?? "", /^text\/event-stream/);
  const reader = response.body!.getReader();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, ms);
  try {
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
    });
    const events = await readSse(new Response(body));
    if (timedOut) {
      throw new Error(`Cannot finish reading ${path}: the stream is still open after ${ms} ms`);
    }
    return events;
  } finally {
    clearTimeout(timer);
  }
}

/** Checks the SSE framing and notification shape, and returns the event types in order. */
function checkEvents(events: SseEvent[], jobId: string): string[] {
  const ids = events.map((event) => event.id!);
  for (let i = 1; i < ids.length; i++) {
    assert.ok(compareEventIds(ids[i - 1], ids[i]) < 0, `ids not increasing: ${ids.join(", ")}`);
  }
  for (const event of events) {
    assert.ok(event.id, "every event has an id");
    const notification = JSON.parse(event.data);
    assert.equal(notification.id, jobId);
    assert.equal(notification.type, event.event);
    assert.ok(!Number.isNaN(Date.parse(notification.at)));
    const ok = !["failed", "canceled"].includes(notification.type);
    assert.equal(notification.success, ok);
    assert.equal("data" in notification, notification.type === "succeeded");
    assert.equal("error" in notification, !ok);
    if (ok) continue;
    assert.equal(typeof notification.error, "string");
  }
  return events.map((event) => event.event!);
}

Deno.test("GET /v1/jobs/:id/events replays a finished job's events in order and closes", async () => {
  await withService(async (service) => {
    const { id, token } = await finishedJob(service);
    const events = await stream(service, `/v1/jobs/${id}/events`, bearer(token));
    assert.deepEqual(checkEvents(events, id), ["queued", "started", "succeeded"]);
    const data = JSON.parse(events[2].data).data;
    assert.match(data.image, /^data:image\/png;base64,/);
    assert.equal(data.mime_type, "image/png");
    assert.equal(data.revised_prompt, "revised");
  });
});

Deno.test("GET /v1/jobs/:id/events resumes after a given event id", async (t) => {
  await withService(async (service) => {
    const { id, token } = await finishedJob(service);
    const all = await stream(service, `/v1/jobs/${id}/events`, bearer(token));
    assert.equal(all.length, 3);
    await t.step("from the Last-Event-ID header", async () => {
      const headers = bearer(token, { "Last-Event-ID": all[0].id! });
      const events = await stream(service, `/v1/jobs/${id}/events`, headers);
      assert.deepEqual(events.map((e) => e.id), [all[1].id, all[2].id]);
      assert.deepEqual(checkEvents(events, id), ["started", "succeeded"]);
    });
    await t.step("from the last_event_id query parameter", async () => {
      const path = `/v1/jobs/${id}/events?last_event_id=${all[1].id}`;
      const events = await stream(service, path, bearer(token));
      assert.deepEqual(events.map((e) => e.id), [all[2].id]);
    });
    await t.step("at or past the terminal event: 204, so EventSource stops retrying", async () => {
      for (const last of [all[2].id!, String(Number(all[2].id) + 99)]) {
        const headers = bearer(token, { "Last-Event-ID": last });
        const response = await service.request(`/v1/jobs/${id}/events`, { headers });
        assert.equal(response.status, 204, `Last-Event-ID ${last}`);
        assert.equal(await response.text(), "");
      }
      assert.equal(service.runtime.relay!.size, 0, "no subscriber is left behind");
      const fresh = await stream(service, `/v1/jobs/${id}/events`, bearer(token));
      assert.equal(fresh.length, 3, "a fresh connection still replays and closes");
    });
  });
});

Deno.test("GET /v1/jobs/:id/events answers 400 for a malformed Last-Event-ID", async (t) => {
  await withService(async (service) => {
    const { id, token } = await finishedJob(service);
    for (const bad of ["abc", "1-2-3", "-1", "1.5"]) {
      await t.step(JSON.stringify(bad), async () => {
        const response = await service.request(`/v1/jobs/${id}/events`, {
          headers: bearer(token, { "Last-Event-ID": bad }),
        });
        assert.equal(response.status, 400);
        assert.equal((await response.json()).error.code, "invalid_request");
      });
    }
  });
});

Deno.test("a job's ticket reads that job's events and nothing else", async (t) => {
  await withService(async (service) => {
    const a = await finishedJob(service);
    const b = await finishedJob(service);
    await t.step("the events URL from the submit response works without a token", async () => {
      const events = await stream(service, a.submitted.urls.events);
      assert.deepEqual(checkEvents(events, a.id), ["queued", "started", "succeeded"]);
    });
    await t.step("job A's ticket on job B's URL is refused", async () => {
      const ticket = new URL(a.submitted.urls.events, "http://x").searchParams.get("ticket")!;
      const response = await service.request(
        `/v1/jobs/${b.id}/events?ticket=${encodeURIComponent(ticket)}`,
      );
      assert.ok([401, 404].includes(response.status), String(response.status));
      const text = await response.text();
      assert.ok(!text.includes(b.id), "nothing about job B leaks");
      assert.ok(JSON.parse(text).error.code);
    });
    await t.step("a ticket is not a bearer token", async () => {
      const ticket = new URL(a.submitted.urls.events, "http://x").searchParams.get("ticket")!;
      const response = await service.request(`/v1/jobs/${a.id}`, { headers: bearer(ticket) });
      assert.equal(response.status, 401);
      assert.equal((await response.json()).error.code, "unauthorized");
    });
    await t.step("a forged ticket is refused", async () => {
      const response = await service.request(`/v1/jobs/${a.id}/events?ticket=forged.ticket.x`);
      assert.equal(response.status, 401);
    });
  });
});

Deno.test("GET /v1/jobs/:id/events delivers live events without duplicates", async (t) => {
  await withService(async (service) => {
    const token = await service.token("alice");
    await t.step("when connected while the job runs", async () => {
      const { body } = await submitJob(service, token);
      await waitForStatus(service, token, body.id, ["running"]);
      const events = await stream(service, `/v1/jobs/${body.id}/events`, bearer(token));
      assert.deepEqual(checkEvents(events, body.id), ["queued", "started", "succeeded"]);
      assert.equal(new Set(events.map((e) => e.id)).size, events.length);
    });
    await t.step("when connected right after submitting", async () => {
      const { body } = await submitJob(service, token);
      const events = await stream(service, body.urls.events);
      assert.deepEqual(checkEvents(events, body.id), ["queued", "started", "succeeded"]);
    });
    await t.step("when resuming mid-job from the queued event", async () => {
      const { body } = await submitJob(service, token);
      const first = await service.request(`/v1/jobs/${body.id}/events`, { headers: bearer(token) });
      // Leaving readSse early cancels the body, which ends this first stream.
      const [queued] = await readSse(first, { limit: 1 });
      assert.equal(queued.event, "queued");
      const headers = bearer(token, { "Last-Event-ID": queued.id! });
      const rest = await stream(service, `/v1/jobs/${body.id}/events`, headers);
      assert.deepEqual(checkEvents(rest, body.id), ["started", "succeeded"]);
    });
  }, { provider: countingProvider({ latencyMs: 300 }) });
});

Deno.test("GET /v1/jobs/:id/events reports a failed job with success false and its error", async () => {
  const provider = countingProvider({ fail: () => new PermanentError("Provider refused") });
  await withService(async (service) => {
    const { id, token } = await finishedJob(service);
    const events = await stream(service, `/v1/jobs/${id}/events`, bearer(token));
    assert.deepEqual(checkEvents(events, id), ["queued", "started", "failed"]);
    const failed = JSON.parse(events[2].data);
    assert.equal(failed.success, false);
    assert.equal(failed.error, "Error processing job");
    assert.equal(failed.data, undefined);
  }, { provider });
});

Deno.test("GET /v1/jobs/:id/events ends a canceled job's stream with a canceled event", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const { body } = await submitJob(service, token);
    await waitForStatus(service, token, body.id, ["running"]);
    const response = await service.request(`/v1/jobs/${body.id}`, {
      method: "DELETE",
      headers: bearer(token),
    });
    assert.equal(response.status, 202);
    await response.body?.cancel();
    const events = await stream(service, `/v1/jobs/${body.id}/events`, bearer(token));
    assert.deepEqual(checkEvents(events, body.id), ["queued", "started", "canceled"]);
  }, { provider: countingProvider({ latencyMs: 500 }) });
});

Deno.test("GET /v1/jobs/:id/events sends a keepalive comment while the job runs", async () => {
  const service = await startTestService({
    env: { SSE_KEEPALIVE_MS: "100" },
    provider: countingProvider({ latencyMs: 700 }),
  });
  try {
    const token = await service.token("keeper");
    const submitted = await service.request("/v1/images", {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
      body: JSON.stringify({ prompt: "slow fox", id: "keepalive-1" }),
    });
    assert.equal(submitted.status, 202);
    const res = await service.request("/v1/jobs/keepalive-1/events", {
      headers: { Authorization: `Bearer ${token}` },
    });
    const text = await res.text();
    assert.ok((text.match(/^: keepalive$/gm) ?? []).length >= 2, text);
    assert.match(text, /event: succeeded/);
  } finally {
    await service.close();
  }
});
