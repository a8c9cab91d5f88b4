/** Issue 20: reference images make a job an edit (xAI's images/edits), checked before it is accepted. */
import assert from "node:assert/strict";
import { delay, submitJob, until } from "../support/app.ts";
import { runJob, withXai } from "./xai_fixture.ts";

/** A real 1x1 PNG. */
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC";
const PNG_URL = `data:image/png;base64,${PNG}`;

/** What xAI received last: its path and body. */
function lastSent(xai: { requests: { path: string; body: unknown }[] }) {
  const { path, body } = xai.requests.at(-1)!;
  return { path, body: body as Record<string, unknown> };
}

Deno.test("images sends the job to /images/edits with each reference as xAI takes it", async (t) => {
  await withXai(async ({ service, xai, alice }) => {
    await t.step("one data: URL goes as image {url, type}", async () => {
      const { job } = await runJob(service, alice, { prompt: "make it blue", images: [PNG_URL] });
      assert.equal(job.status, "succeeded");
      const { path, body } = lastSent(xai);
      assert.equal(path, "/v1/images/edits");
      assert.deepEqual(body.image, { url: PNG_URL, type: "image_url" });
      assert.equal(body.images, undefined);
      assert.equal(body.prompt, "make it blue");
    });
    await t.step("an https:// URL is handed over as it is, never fetched here", async () => {
      const url = "https://images.example.invalid/cat.png?x=1";
      const { job } = await runJob(service, alice, { prompt: "p", images: [url, PNG_URL] });
      assert.equal(job.status, "succeeded");
      const { body } = lastSent(xai);
      assert.deepEqual(body.images, [
        { url, type: "image_url" },
        { url: PNG_URL, type: "image_url" },
      ]);
    });
    await t.step("a data: URL is sent with the type its bytes have", async () => {
      await runJob(service, alice, { prompt: "p", images: [`data:image/jpeg;base64,${PNG}`] });
      assert.deepEqual(lastSent(xai).body.image, { url: PNG_URL, type: "image_url" });
    });
  });
});

Deno.test("a data: URL is checked by its magic numbers and size before the job is accepted", async (t) => {
  await withXai(async ({ service, xai, alice }) => {
    const calls = xai.calls;
    const refused = async (images: unknown) => {
      const { response } = await submitJob(service, alice, { prompt: "p", images });
      assert.equal(response.status, 422, JSON.stringify(images).slice(0, 80));
    };
    await t.step("not an image, not base64, or another scheme", async () => {
      await refused([`data:image/png;base64,${btoa("GIF89a not a png at all")}`]);
      await refused(["data:image/png;base64,%%%"]);
      await refused(["data:image/png,rawtext"]);
      await refused(["http://example.com/a.png"]);
      await refused(["ftp://example.com/a.png"]);
      await refused(["https://user:pw@example.com/a.png"]);
      await refused([PNG_URL, PNG_URL, PNG_URL, PNG_URL]);
      await refused([42]);
    });
    await t.step("over 10 MiB decoded, though the body may hold it", async () => {
      const big = new Uint8Array(10 * 1024 * 1024 + 1);
      big.set(Uint8Array.fromBase64(PNG));
      await refused([`data:image/png;base64,${big.toBase64()}`]);
      const fits = big.subarray(0, 10 * 1024 * 1024);
      const { response } = await submitJob(service, alice, {
        prompt: "a big one",
        images: [`data:image/png;base64,${fits.toBase64()}`],
      });
      assert.equal(response.status, 202);
    });
    await t.step("the rest of the body still has 64 KiB", async () => {
      const response = await service.request("/v1/images", {
        method: "POST",
        headers: { Authorization: `Bearer ${alice}` },
        body: JSON.stringify({ prompt: "p", images: [PNG_URL], pad: "x".repeat(64 * 1024) }),
      });
      assert.equal(response.status, 413);
      await response.body?.cancel();
    });
    assert.equal(xai.calls - calls, 0, "a refused submit reached the provider");
  });
});

Deno.test("job:<id> names an image of the caller's own succeeded job, resolved as a data URI", async (t) => {
  await withXai(async ({ service, xai, alice, bob }) => {
    const source = await runJob(service, alice, { prompt: "two foxes", n: 2 });
    const [first, second] = source.job.result.images;
    const bytes = async (url: string) => (await service.request(url)).bytes();
    await t.step("job:<id> is the first image, job:<id>#1 the second", async () => {
      await runJob(service, alice, { prompt: "edit", images: [`job:${source.id}`] });
      const sent = lastSent(xai).body.image as { url: string };
      assert.equal(
        sent.url,
        `data:${first.mime_type};base64,${(await bytes(first.url)).toBase64()}`,
      );
      await runJob(service, alice, { prompt: "edit", images: [`job:${source.id}#1`] });
      const again = lastSent(xai).body.image as { url: string };
      assert.equal(
        again.url,
        `data:${second.mime_type};base64,${(await bytes(second.url)).toBase64()}`,
      );
    });
    await t.step(
      "another owner's job, a missing image or index, an unfinished job: 422",
      async () => {
        const calls = xai.calls;
        const refuse = async (token: string, ref: string) => {
          const images = [ref];
          const { response, body } = await submitJob(service, token, { prompt: "p", images });
          assert.equal(response.status, 422, ref);
          assert.equal(body.error.code, "invalid_request");
        };
        await refuse(bob, `job:${source.id}`);
        await refuse(alice, `job:${source.id}#2`);
        await refuse(alice, "job:no-such-job");
        await refuse(alice, "job:bad id");
        xai.setLatency(60_000);
        const { body: pending } = await submitJob(service, alice, { prompt: "slow" });
        await refuse(alice, `job:${pending.id}`);
        xai.setLatency(0);
        await until(() => xai.calls - calls >= 1, "the slow job's provider call");
        await delay(50);
        assert.equal(xai.calls - calls, 1, "only the slow job reached the provider");
      },
    );
    await t.step("the references are dropped once the job ends", async () => {
      const { id } = await runJob(service, alice, { prompt: "p", images: [PNG_URL] });
      assert.deepEqual(await service.runtime.deps.broker.references(id), []);
    });
  });
});
