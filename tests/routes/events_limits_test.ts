/** Tests of GET /v1/jobs/:id/events at its edges: a job that disappears, a client that stops reading. */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { Relay } from "../../lib/live/relay.ts";
import {
  appWith,
  bearer,
  countingProvider,
  readSse,
  startTestService,
  submitJob,
  until,
  vanishingBroker,
  waitForStatus,
  withService,
} from "../support/app.ts";

Deno.test("GET /v1/jobs/:id/events ends the stream of a job that disappears", async () => {
  const gate = Promise.withResolvers<void>();
  await withService(async (service) => {
    const { broker, forget } = vanishingBroker(service.runtime.deps.broker);
    const relay = new Relay({ broker, log: getLogger(["imagejobs", "test"]), resyncMs: 50 });
    await relay.start();
    try {
      const app = appWith(service, { relay });
      const token = await service.token("alice");
      const { body } = await submitJob(service, token, { prompt: "never ends" });
      const response = await app.request(`/v1/jobs/${body.id}/events`, { headers: bearer(token) });
      assert.equal(response.status, 200);
      const reading = readSse(response);
      await until(() => relay.size === 1, "the subscriber");
      // As if its TTL ran out or Redis came back empty: the next periodic read finds no job.
      forget(body.id);
      await until(() => relay.size === 0, "the subscriber of the vanished job ended");
      const events = await reading;
      assert.equal(events[0].event, "queued");
      assert.ok(
        events.every((event) => !["succeeded", "failed", "canceled"].includes(event.event!)),
      );
    } finally {
      gate.resolve();
      await relay.close();
    }
  }, { provider: countingProvider({ gate: gate.promise }) });
});

Deno.test("GET /v1/jobs/:id/events cuts off a client that stops reading", async () => {
  const gate = Promise.withResolvers<void>();
  const service = await startTestService({
    env: { SSE_KEEPALIVE_MS: "100", SSE_MAX_BUFFERED_BYTES: "600" },
    provider: countingProvider({ gate: gate.promise }),
  });
  try {
    const token = await service.token("sloth");
    const { body } = await submitJob(service, token, { prompt: "a slow reader" });
    await waitForStatus(service, token, body.id, ["running"]);
    // Never read: events and keepalives pile up in the stream until the cap cuts it off.
    const response = await service.request(`/v1/jobs/${body.id}/events`, {
      headers: bearer(token),
    });
    assert.equal(response.status, 200);
    const relay = service.runtime.relay!;
    assert.equal(relay.size, 1);
    await until(() => relay.size === 0, "the stalled stream cut off");
    const job = await waitForStatus(service, token, body.id, ["running"]);
    assert.equal(job.status, "running", "the job did not end: the cap ended the stream");
    await assert.rejects(response.text(), /stopped reading/);
  } finally {
    gate.resolve();
    await service.close();
  }
});
