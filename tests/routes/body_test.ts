/** Tests of the JSON body reader (routes/body.ts) through POST /v1/images and POST /v1/dev/token. */
import assert from "node:assert/strict";
import { MAX_REQUEST_BYTES } from "../../routes/references.ts";
import { bearer, withService } from "../support/app.ts";

const LARGE = JSON.stringify({ prompt: "a fox", pad: "x".repeat(64 * 1024) });

/** A 128 KiB body that counts how often it was read (nothing is buffered before the first read). */
function counted(): { body: ReadableStream<Uint8Array>; reads: () => number } {
  let reads = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      reads++;
      controller.enqueue(new Uint8Array(128 * 1024).fill(0x20));
      controller.close();
    },
  }, { highWaterMark: 0 });
  return { body, reads: () => reads };
}

Deno.test("POST /v1/images answers 413 by the declared or the counted size", async (t) => {
  await withService(async (service) => {
    const headers = bearer(await service.token("alice"));
    const post = (body: BodyInit, extra: Record<string, string>) =>
      service.request("/v1/images", {
        method: "POST",
        headers: { ...headers, ...extra },
        body,
        duplex: "half",
      } as RequestInit);
    await t.step(
      "a Content-Length over the cap (64 KiB and three 10 MiB images), unread",
      async () => {
        const { body, reads } = counted();
        const res = await post(body, { "Content-Length": String(MAX_REQUEST_BYTES + 1) });
        assert.equal(res.status, 413);
        assert.equal(reads(), 0);
        assert.equal((await res.json()).error.code, "payload_too_large");
      },
    );
    await t.step("a Content-Length that understates the body", async () => {
      const res = await post(LARGE, { "Content-Length": "100" });
      assert.equal(res.status, 413);
      assert.equal((await res.json()).error.code, "payload_too_large");
    });
    await t.step("a body without Content-Length, counted while streaming", async () => {
      const res = await post(LARGE, {});
      assert.equal(res.status, 413);
      assert.equal((await res.json()).error.code, "payload_too_large");
    });
    await t.step("a body of exactly its Content-Length is read", async () => {
      const body = JSON.stringify({ prompt: "a fox" });
      const res = await post(body, { "Content-Length": String(body.length) });
      assert.equal(res.status, 202);
      await res.body?.cancel();
    });
  });
});

Deno.test("POST /v1/images validates a JSON body with charset and parameters as it came", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const res = await service.request("/v1/images", {
      method: "POST",
      headers: bearer(token, { "Content-Type": "application/json; charset=utf-8" }),
      body: JSON.stringify({ prompt: "a fox", aspect_ratio: "wide" }),
    });
    assert.equal(res.status, 422);
    assert.equal((await res.json()).error.code, "invalid_request");
  });
});

Deno.test("POST /v1/dev/token validates an empty or text/plain body as JSON", async (t) => {
  await withService(async (service) => {
    const post = (body: string, headers: Record<string, string>) =>
      service.request("/v1/dev/token", { method: "POST", headers, body });
    await t.step("an empty application/json body reads as {}", async () => {
      const res = await post("", { "Content-Type": "application/json" });
      assert.equal(res.status, 200);
      assert.equal((await res.json()).sub, "dev-user");
    });
    await t.step("a text/plain body is validated (422 for a bad sub)", async () => {
      const res = await post(JSON.stringify({ sub: "" }), { "Content-Type": "text/plain" });
      assert.equal(res.status, 422);
      await res.body?.cancel();
    });
    await t.step("a body without Content-Type is read (sub kept)", async () => {
      const res = await post(JSON.stringify({ sub: "carol" }), {});
      assert.equal(res.status, 200);
      assert.equal((await res.json()).sub, "carol");
    });
  }, { env: { DEV_MODE: "1", JWT_SECRET: "" } });
});
