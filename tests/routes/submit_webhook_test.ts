/** Tests of POST /v1/images with `webhook` and `webhook_events`: stored with the job, or 422. */
import assert from "node:assert/strict";
import { countingProvider, submitJob, type TestService, withService } from "../support/app.ts";

/** A Standard Webhooks secret (tests only). */
const WEBHOOK_SECRET = `whsec_${new TextEncoder().encode("test-webhook-secret-0123").toBase64()}`;
/** A webhook target the tests allow; nothing listens there and no delivery is awaited. */
const HOOK = "http://127.0.0.1:9/hooks/images";
const held = () => countingProvider({ gate: new Promise(() => {}) });

/** Submits `body` as alice and returns the status and the JSON answer. */
async function submit(service: TestService, body: Record<string, unknown>) {
  const token = await service.token("alice");
  const { response, body: answer } = await submitJob(service, token, { prompt: "a fox", ...body });
  return { status: response.status, answer };
}

Deno.test("POST /v1/images stores the webhook and its event types with the job", async (t) => {
  await withService(async (service) => {
    const broker = service.runtime.deps.broker;
    await t.step("the terminal event types by default", async () => {
      const { status, answer } = await submit(service, { webhook: HOOK });
      assert.equal(status, 202);
      const job = await broker.get(answer.id);
      assert.equal(job?.webhook, HOOK);
      assert.deepEqual(job?.webhookEvents, ["succeeded", "failed", "canceled"]);
    });
    await t.step("the event types asked for", async () => {
      const { status, answer } = await submit(service, {
        webhook: HOOK,
        webhook_events: ["started", "succeeded"],
      });
      assert.equal(status, 202);
      assert.deepEqual((await broker.get(answer.id))?.webhookEvents, ["started", "succeeded"]);
    });
    await t.step("no webhook: none stored", async () => {
      const { answer } = await submit(service, {});
      const job = await broker.get(answer.id);
      assert.equal(job?.webhook, undefined);
      assert.equal(job?.webhookEvents, undefined);
    });
  }, {
    env: { WEBHOOK_SECRET, WEBHOOK_HOSTS: "127.0.0.1:9" },
    provider: held(),
  });
});

Deno.test("POST /v1/images answers 422 for a webhook it cannot take", async (t) => {
  await withService(async (service) => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ["a loopback host not in WEBHOOK_HOSTS", { webhook: "http://127.0.0.1:8/x" }, /loopback/],
      ["a private address", { webhook: "http://10.1.2.3/x" }, /private/],
      ["a link-local address", { webhook: "http://169.254.169.254/latest" }, /link-local/],
      ["localhost", { webhook: "http://localhost:9/x" }, /webhook/],
      ["credentials in the URL", { webhook: "http://u:p@127.0.0.1:9/x" }, /credentials/],
      ["not a URL", { webhook: "not a url" }, /webhook/],
      ["another scheme", { webhook: "ftp://127.0.0.1:9/x" }, /webhook/],
      ["a URL over 2048 characters", { webhook: `${HOOK}?${"a".repeat(2050)}` }, /webhook/],
      ["no event type", { webhook: HOOK, webhook_events: [] }, /webhook_events/],
      [
        "a repeated event type",
        { webhook: HOOK, webhook_events: ["succeeded", "succeeded"] },
        /webhook_events/,
      ],
      ["an unknown event type", { webhook: HOOK, webhook_events: ["done"] }, /webhook_events/],
      ["event types that are not a list", { webhook: HOOK, webhook_events: "succeeded" }, /events/],
      ["event types without a webhook", { webhook_events: ["succeeded"] }, /webhook_events/],
    ];
    for (const [name, body, message] of cases) {
      await t.step(name, async () => {
        const { status, answer } = await submit(service, body);
        assert.equal(status, 422, JSON.stringify(answer));
        assert.equal(answer.error.code, "invalid_request");
        assert.match(answer.error.message, /^Cannot accept the (request|webhook): /);
        assert.match(answer.error.message, message);
      });
    }
  }, { env: { WEBHOOK_SECRET, WEBHOOK_HOSTS: "127.0.0.1:9" }, provider: held() });
});

Deno.test("POST /v1/images refuses a webhook with 422 when WEBHOOK_SECRET is not set", async () => {
  await withService(async (service) => {
    const { status, answer } = await submit(service, { webhook: HOOK });
    assert.equal(status, 422);
    assert.equal(answer.error.code, "invalid_request");
    assert.match(answer.error.message, /WEBHOOK_SECRET/);
    const unhooked = await submit(service, {});
    assert.equal(unhooked.status, 202, "a job without a webhook is fine");
  }, { env: { WEBHOOK_HOSTS: "127.0.0.1:9" }, provider: held() });
});
