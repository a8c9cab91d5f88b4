/** What a job asks the provider for, and the outcome of its answer. */
import assert from "node:assert/strict";
import { PermanentError } from "../../lib/errors.ts";
import { ContentPolicyError } from "../../lib/provider/refusal.ts";
import { createMemoryBroker } from "../../lib/queue/memory.ts";
import { failure, providerRequest, succeeded } from "../../workers/job_request.ts";

Deno.test("a refusal fails with its message and code, anything else with the seed's", () => {
  assert.deepEqual(failure(new ContentPolicyError("x")), {
    type: "failed",
    error: "The request was refused by the image provider's content policy",
    errorCode: "content_policy",
  });
  assert.deepEqual(failure(new PermanentError("x")), {
    type: "failed",
    error: "Error processing job",
  });
});

Deno.test("a success keeps the first image as its fast path and the others in order", () => {
  const png = "iVBORw0KGgo=";
  const outcome = succeeded({
    base64: png,
    mimeType: "image/png",
    more: [{ base64: "/9j/4A==", mimeType: "image/jpeg" }],
  });
  assert.ok(outcome.type === "succeeded");
  assert.equal(outcome.base64, png);
  assert.deepEqual(outcome.more?.map((m) => m.mimeType), ["image/jpeg"]);
});

Deno.test("a job: reference to an image gone since the submit fails the job for good", async () => {
  const broker = createMemoryBroker();
  try {
    await broker.submit({ id: "j1", owner: "alice", prompt: "p", references: ["job:gone#0"] });
    const job = (await broker.get("j1"))!;
    await assert.rejects(providerRequest(job, broker), PermanentError);
  } finally {
    await broker.close();
  }
});
