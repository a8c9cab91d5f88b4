/** The page at `/` in chromium against the real service: sign-in, live jobs, images, reload, cancel. */
import assert from "node:assert/strict";
import {
  assertClean,
  card,
  generate,
  loadedImage,
  OPTIONS,
  type PageGlobals,
  PHONE,
  signInWithDevToken,
  steps,
  token,
  waitForStatus,
  withSetup,
} from "./page_helpers.ts";
import { waitForStatus as waitForJob } from "../e2e/e2e_helpers.ts";

Deno.test(
  "the page signs in with a dev token, follows a job live and shows its image",
  OPTIONS,
  async (t) => {
    await withSetup({}, async ({ service, xai, browser }) => {
      const watched = await signInWithDevToken(browser, service.url);
      const { page, context } = watched;
      await context.grantPermissions(["clipboard-read", "clipboard-write"], {
        origin: service.url,
      });

      await t.step("a job goes queued, started, succeeded and shows its image by URL", async () => {
        const id = await generate(page, "a red fox in snow", "16:9");
        await waitForStatus(page, id, "succeeded");
        assert.deepEqual(await steps(page, id), ["queued", "started", "succeeded"]);
        const image = await loadedImage(page, id);
        assert.ok(image.width > 0);
        assert.match(image.src, new RegExp(`^/v1/jobs/${id}/image\\?ticket=`));
        assert.equal(await page.getAttribute(`${card(id)} .download`, "href"), image.src);
        assert.equal(await page.getAttribute(`${card(id)} .download`, "download"), `${id}.png`);
        assert.equal(await page.isHidden(`${card(id)} .cancel`), true);
        const sent = xai.requests.at(-1)?.body as Record<string, unknown>;
        assert.equal(sent.prompt, "a red fox in snow");
        assert.equal(sent.aspect_ratio, "16:9");
        const html = await page.content();
        assert.ok(!html.includes("data:image"), "no base64 image in the DOM");
      });

      await t.step("copy link puts the image's absolute URL on the clipboard", async () => {
        const id = (await page.locator("#cards > .card").first().getAttribute("data-id"))!;
        await page.click(`${card(id)} .copy`);
        await page.waitForSelector(`${card(id)} .copied:has-text("copied")`);
        const copied = await page.evaluate(() =>
          (globalThis as unknown as PageGlobals).navigator.clipboard.readText()
        );
        const src = await page.getAttribute(`${card(id)} .result img`, "src");
        assert.equal(copied, new URL(src!, service.url).href);
      });

      await t.step("a failed job shows its message and no image", async () => {
        xai.inject({ status: 400 });
        const id = await generate(page, "a prompt the provider refuses");
        await waitForStatus(page, id, "failed");
        assert.deepEqual(await steps(page, id), ["queued", "started", "failed"]);
        assert.equal(await page.textContent(`${card(id)} .card-error`), "Error processing job");
        assert.equal(await page.isHidden(`${card(id)} .result`), true);
      });

      await t.step("a second job while one runs gets its own card and display", async () => {
        xai.inject({ delayMs: 2_500 });
        const slow = await generate(page, "a slow lighthouse");
        await page.waitForSelector(`${card(slow)} .step.started`);
        const fast = await generate(page, "a quick sparrow", "9:16");
        assert.notEqual(fast, slow);
        await waitForStatus(page, fast, "succeeded");
        assert.equal(await page.getAttribute(card(slow), "data-status"), "running");
        assert.equal(await page.isHidden(`${card(slow)} .result`), true);
        await waitForStatus(page, slow, "succeeded");
        assert.deepEqual(await steps(page, slow), ["queued", "started", "succeeded"]);
        assert.deepEqual(await steps(page, fast), ["queued", "started", "succeeded"]);
        const [a, b] = [await loadedImage(page, slow), await loadedImage(page, fast)];
        assert.notEqual(a.src, b.src);
        assert.match(a.src, new RegExp(`/v1/jobs/${slow}/image`));
      });

      await t.step("at 390 px wide nothing scrolls sideways", async () => {
        await generate(page, `a long word ${"x".repeat(300)}`);
        await page.setViewportSize(PHONE);
        await page.waitForSelector("#history > .item");
        const width = await page.evaluate(() =>
          (globalThis as unknown as PageGlobals).document.documentElement.scrollWidth
        );
        assert.ok(width <= PHONE.width, `scrollWidth ${width}`);
        await watched.screenshot("page-phone");
        await page.setViewportSize({ width: 1280, height: 800 });
        await watched.screenshot("page-desktop");
      });

      await t.step("with no console error, no CSP violation and nothing but 127.0.0.1", () => {
        assertClean(watched);
      });
    });
  },
);

Deno.test(
  "a running job: a reload resumes its timeline, and cancel stops it",
  OPTIONS,
  async (t) => {
    await withSetup({}, async ({ service, xai, browser }) => {
      const watched = await signInWithDevToken(browser, service.url);
      const { page } = watched;
      const cursor = () => page.evaluate(() => sessionStorage.getItem("imagejobs.cursor"));
      const nextStream = () =>
        page.waitForRequest((request) => new URL(request.url()).pathname === "/v1/events");

      await t.step(
        "a reload mid-job resumes after the last event: nothing missed or twice",
        async () => {
          xai.inject({ delayMs: 3_000 });
          const id = await generate(page, "a kite over the dunes");
          await page.waitForSelector(`${card(id)} .step.started`);
          const before = await cursor();
          assert.ok(before, "a resume point is kept");
          const stream = nextStream();
          await page.reload();
          assert.equal((await stream).headers()["last-event-id"], before);
          await waitForStatus(page, id, "succeeded");
          assert.deepEqual(await steps(page, id), ["queued", "started", "succeeded"]);
          assert.ok((await loadedImage(page, id)).width > 0);
          await watched.screenshot("page-reloaded-mid-job");

          const after = await cursor();
          assert.notEqual(after, before);
          const again = nextStream();
          await page.reload();
          assert.equal((await again).headers()["last-event-id"], after);
          await page.waitForSelector("#live[data-state=live]");
          assert.deepEqual(await steps(page, id), ["queued", "started", "succeeded"]);
          assert.equal(await page.locator("#cards > .card").count(), 1);
        },
      );

      await t.step(
        "a resume point the service cannot use: reset, then the jobs are re-read",
        async () => {
          xai.inject({ delayMs: 1_500 });
          const id = await generate(page, "a tide that comes in while away");
          await page.waitForSelector(`${card(id)} .step.started`);
          // The stream is cut and the page reloads with a resume point no service ever made; the job
          // ends meanwhile, so its end can only come from re-reading it after `event: reset`.
          watched.expect(/Failed to load resource: net::ERR_FAILED/);
          await page.route("**/v1/events", (route) => route.abort());
          await page.evaluate(() => sessionStorage.setItem("imagejobs.cursor", "x".repeat(2_000)));
          await page.reload();
          await page.waitForSelector("#live[data-state=reconnecting]");
          await waitForJob(service.url, await token(page), id, ["succeeded"]);
          const reread = page.waitForRequest((r) => new URL(r.url()).pathname === `/v1/jobs/${id}`);
          await page.unroute("**/v1/events");
          await reread;
          await waitForStatus(page, id, "succeeded");
          assert.deepEqual(await steps(page, id), ["queued", "started", "succeeded"]);
          assert.ok((await loadedImage(page, id)).width > 0);
          assert.notEqual(await cursor(), "x".repeat(2_000));
        },
      );

      await t.step("cancel stops a running job and its card ends canceled", async () => {
        xai.inject({ hang: true });
        const id = await generate(page, "a painting that never dries");
        await page.waitForSelector(`${card(id)} .step.started`);
        await page.click(`${card(id)} .cancel`);
        await waitForStatus(page, id, "canceled");
        assert.deepEqual(await steps(page, id), ["queued", "started", "canceled"]);
        await watched.screenshot("page-canceled");
        assert.equal(await page.isHidden(`${card(id)} .cancel`), true);
        assert.equal(await page.isHidden(`${card(id)} .result`), true);
        const job = await (await fetch(`${service.url}/v1/jobs/${id}`, {
          headers: { Authorization: `Bearer ${await token(page)}` },
        })).json();
        assert.equal(job.status, "canceled");
      });

      await t.step("with no console error, no CSP violation and nothing but 127.0.0.1", () => {
        assertClean(watched);
      });
    });
  },
);
