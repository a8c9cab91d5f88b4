import assert from "node:assert/strict";
import { Webhook } from "standardwebhooks";
import { webhookId, WebhookSigner } from "../../../lib/webhooks/signing.ts";
import { SECRET } from "./helpers.ts";

const TASK = { jobId: "job-1", type: "succeeded" as const, eventId: "3" };

Deno.test("WebhookSigner signs what standardwebhooks verifies", () => {
  const body = JSON.stringify({ id: "job-1", type: "succeeded", success: true });
  const headers = new WebhookSigner(SECRET).sign(webhookId(TASK), new Date(), body);
  assert.deepEqual(new Webhook(SECRET).verify(body, headers), JSON.parse(body));
  assert.match(headers["webhook-signature"], /^v1,[A-Za-z0-9+/]+=*$/);
  assert.match(headers["webhook-timestamp"], /^\d{10}$/);
});

Deno.test("a signature fails verification for another body, id, time or secret", () => {
  const body = '{"a":1}';
  const at = new Date();
  const headers = new WebhookSigner(SECRET).sign("msg_x", at, body);
  const verifier = new Webhook(SECRET);
  assert.throws(() => verifier.verify('{"a":2}', headers));
  assert.throws(() => verifier.verify(body, { ...headers, "webhook-id": "msg_y" }));
  const later = String(Number(headers["webhook-timestamp"]) + 1);
  assert.throws(() => verifier.verify(body, { ...headers, "webhook-timestamp": later }));
  const other = `whsec_${btoa("another secret of thirty-two byte")}`;
  assert.throws(() => new Webhook(other).verify(body, headers));
});

Deno.test("webhookId is stable for one event and differs between events", () => {
  assert.equal(webhookId(TASK), webhookId({ ...TASK }));
  assert.equal(webhookId(TASK), "msg_job-1_succeeded_3");
  assert.notEqual(webhookId(TASK), webhookId({ ...TASK, eventId: "4" }));
  assert.notEqual(webhookId(TASK), webhookId({ ...TASK, type: "failed" }));
  assert.notEqual(webhookId(TASK), webhookId({ ...TASK, jobId: "job-2" }));
});

Deno.test("WebhookSigner refuses a secret that is not base64", () => {
  assert.throws(() => new WebhookSigner("whsec_***not base64***"));
});
