/** Issue 20: n, resolution and quality reach xAI; every image is stored, listed and served; refusals. */
import assert from "node:assert/strict";
import { sniffImage } from "../../lib/provider/images.ts";
import { bearer, submitJob } from "../support/app.ts";
import { REFUSAL } from "../support/fake_xai.ts";
import { assert422, eventsOf, runJob, withXai } from "./xai_fixture.ts";

Deno.test("POST /v1/images validates n, resolution and quality and sends them to xAI", async (t) => {
  await withXai(async ({ service, xai, alice }) => {
    await t.step("values outside the contract are a 422 that reaches no provider", async () => {
      const bad = [
        { n: 0 },
        { n: 11 },
        { n: 1.5 },
        { n: "4" },
        { resolution: "4k" },
        { resolution: "1K" },
        { quality: "ultra" },
        { images: [] },
      ];
      for (const extra of bad) {
        const { response } = await submitJob(service, alice, { prompt: "a fox", ...extra });
        assert.equal(response.status, 422, JSON.stringify(extra));
      }
      assert.equal(xai.calls, 0);
    });
    await t.step("set ones are sent as given, absent ones not at all", async () => {
      const { job } = await runJob(service, alice, {
        prompt: "a fox",
        resolution: "2k",
        quality: "low",
      });
      assert.equal(job.status, "succeeded");
      assert.equal(job.resolution, "2k");
      assert.equal(job.quality, "low");
      const sent = xai.requests.at(-1)!;
      assert.equal(sent.path, "/v1/images/generations");
      assert.deepEqual(sent.body, {
        model: "grok-imagine-image",
        prompt: "a fox",
        n: 1,
        response_format: "b64_json",
        resolution: "2k",
        quality: "low",
      });
    });
  });
});

Deno.test("a job with n = 4 makes one provider request and stores, lists and serves 4 images", async (t) => {
  await withXai(async ({ service, xai, alice, bob }) => {
    const before = xai.calls;
    const { id, job } = await runJob(service, alice, { prompt: "four foxes", n: 4 });
    assert.equal(xai.calls - before, 1);
    assert.equal((xai.requests.at(-1)!.body as { n: number }).n, 4);
    await t.step("GET lists every image and keeps the first inline", () => {
      assert.equal(job.n, 4);
      assert.match(job.result.image, /^data:image\/png;base64,/);
      const types = job.result.images.map((image: { mime_type: string }) => image.mime_type);
      assert.deepEqual(types, ["image/png", "image/jpeg", "image/webp", "image/png"]);
      job.result.images.forEach((image: { url: string }, k: number) => {
        assert.match(image.url, new RegExp(`^/v1/jobs/${id}/images/${k}\\?ticket=[\\w.-]+$`));
      });
    });
    await t.step("each image is served by its link, with its own type and ETag", async () => {
      const etags = new Set<string>();
      for (const [k, link] of job.result.images.entries()) {
        const response = await service.request(link.url);
        assert.equal(response.status, 200);
        const bytes = await response.bytes();
        assert.equal(response.headers.get("content-type"), link.mime_type);
        assert.equal(sniffImage(bytes), link.mime_type);
        assert.equal(response.headers.get("cache-control"), "private");
        const etag = response.headers.get("etag")!;
        etags.add(etag);
        const again = await service.request(`/v1/jobs/${id}/images/${k}`, {
          headers: bearer(alice, { "If-None-Match": etag }),
        });
        assert.equal(again.status, 304);
      }
      assert.equal(etags.size, 4);
      const first = await service.request(`/v1/jobs/${id}/images/0`, { headers: bearer(alice) });
      const image = await service.request(`/v1/jobs/${id}/image`, { headers: bearer(alice) });
      assert.deepEqual(await first.bytes(), await image.bytes());
    });
    await t.step("an index past the last is a 404, a malformed one a 422", async () => {
      const past = await service.request(`/v1/jobs/${id}/images/4`, { headers: bearer(alice) });
      assert.equal(past.status, 404);
      await past.body?.cancel();
      for (const index of ["x", "-1", "1.5", "10", "01"]) {
        const url = `/v1/jobs/${id}/images/${index}`;
        await assert422(await service.request(url, { headers: bearer(alice) }));
      }
      const other = await service.request(`/v1/jobs/${id}/images/1`, { headers: bearer(bob) });
      assert.equal(other.status, 404);
      await other.body?.cancel();
    });
    await t.step("the succeeded notification inlines the first and links all", async () => {
      const done = (await eventsOf(service, alice, id)).at(-1);
      assert.equal(done.type, "succeeded");
      assert.equal(done.data.image, job.result.image);
      assert.equal(done.data.images.length, 4);
      const response = await service.request(done.data.images[3].url);
      assert.equal(response.status, 200);
      await response.body?.cancel();
    });
    await t.step("the listing shows every image too", async () => {
      const response = await service.request("/v1/jobs", { headers: bearer(alice) });
      const [item] = (await response.json()).data;
      assert.equal(item.id, id);
      assert.equal(item.result.image, undefined);
      assert.equal(item.result.images.length, 4);
    });
  });
});

Deno.test("a content-policy refusal fails the job at once, after one provider call", async (t) => {
  await withXai(async ({ service, xai, alice }) => {
    const refused = "The request was refused by the image provider's content policy";
    for (const fault of [{ refuse: true as const }, { moderated: true as const }]) {
      await t.step(`when xAI answers ${JSON.stringify(fault)}`, async () => {
        xai.inject(fault);
        const before = xai.calls;
        const { id, job } = await runJob(service, alice, { prompt: "something refused" });
        assert.equal(xai.calls - before, 1);
        assert.equal(job.status, "failed");
        assert.equal(job.error, refused);
        assert.equal(job.error_code, "content_policy");
        assert.equal(job.attempts, 1);
        const failed = (await eventsOf(service, alice, id)).at(-1);
        assert.equal(failed.type, "failed");
        assert.equal(failed.error, refused);
        assert.equal(failed.error_code, "content_policy");
      });
    }
    await t.step("another 400 keeps today's behaviour", async () => {
      xai.inject({ status: 400, message: "prompt too long for the model" });
      const before = xai.calls;
      const { job } = await runJob(service, alice, { prompt: "a plain 400" });
      assert.equal(xai.calls - before, 1);
      assert.equal(job.error, "Error processing job");
      assert.equal(job.error_code, undefined);
    });
    await t.step("a 500 is still retried, and a refusal after it ends the job", async () => {
      xai.inject({ status: 500 }, { refuse: true });
      const before = xai.calls;
      const { job } = await runJob(service, alice, { prompt: "retry then refuse" });
      assert.equal(xai.calls - before, 2);
      assert.equal(job.error_code, "content_policy");
    });
    assert.match(REFUSAL.error, /moderation/);
  });
});
