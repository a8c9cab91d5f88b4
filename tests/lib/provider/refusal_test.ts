/** How a content-policy refusal is told apart from other provider errors. */
import assert from "node:assert/strict";
import { isRefusal } from "../../../lib/provider/refusal.ts";

Deno.test("isRefusal recognises a 4xx whose code or message names the content policy", async (t) => {
  await t.step("refusals", () => {
    assert.ok(isRefusal(400, "", "Generated image rejected by content moderation."));
    assert.ok(isRefusal(400, "content_policy_violation", "Your request was rejected"));
    assert.ok(isRefusal(400, "", "Prompt violates the content policy"));
    assert.ok(isRefusal(403, "", "Blocked by the safety system"));
    assert.ok(isRefusal(422, "moderation_blocked", ""));
  });
  await t.step("not refusals", () => {
    assert.ok(!isRefusal(400, "Client specified an invalid argument", "prompt is required"));
    assert.ok(!isRefusal(400, "", "n must be between 1 and 10"));
    assert.ok(!isRefusal(429, "", "content moderation is busy"));
    assert.ok(!isRefusal(401, "", "content policy"));
    assert.ok(!isRefusal(500, "", "content policy service down"));
    assert.ok(!isRefusal(200, "", "moderation"));
  });
});
