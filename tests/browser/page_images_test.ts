/** The page asks for several images and edits a result ("Edit this image"), in chromium. */
import assert from "node:assert/strict";
import {
  assertClean,
  card,
  generate,
  loadedImage,
  OPTIONS,
  signInWithDevToken,
  waitForStatus,
  withSetup,
} from "./page_helpers.ts";

Deno.test("the page asks for several images and edits a result", OPTIONS, async (t) => {
  await withSetup({}, async ({ service, xai, browser }) => {
    const watched = await signInWithDevToken(browser, service.url);
    const { page } = watched;
    let first = "";

    await t.step("a count of 3 makes one request and shows three images", async () => {
      await page.selectOption("#count", "3");
      const calls = xai.calls;
      first = await generate(page, "three red foxes");
      await waitForStatus(page, first, "succeeded");
      assert.equal(xai.calls - calls, 1);
      assert.equal((xai.requests.at(-1)!.body as { n: number }).n, 3);
      assert.ok((await loadedImage(page, first)).width > 0);
      const more = page.locator(`${card(first)} .more-images img`);
      await more.nth(1).waitFor();
      assert.equal(await more.count(), 2);
      const widths = await more.evaluateAll((images) =>
        Promise.all(images.map(async (el) => {
          const image = el as unknown as { decode(): Promise<void>; naturalWidth: number };
          await image.decode();
          return image.naturalWidth;
        }))
      );
      assert.ok(widths.every((width) => width > 0), String(widths));
      const srcs = await more.evaluateAll((images) => images.map((el) => el.getAttribute("src")));
      assert.match(srcs[0]!, new RegExp(`^/v1/jobs/${first}/images/1\\?ticket=`));
      assert.match(srcs[1]!, new RegExp(`^/v1/jobs/${first}/images/2\\?ticket=`));
    });

    await t.step("Edit this image starts an edit of it with job:<id>", async () => {
      await page.selectOption("#count", "1");
      await page.click(`${card(first)} .edit`);
      await page.waitForSelector("#editing:not([hidden])");
      assert.equal(await page.textContent("#editing-ref"), first);
      const calls = xai.calls;
      const edited = await generate(page, "make the foxes blue");
      await waitForStatus(page, edited, "succeeded");
      assert.equal(xai.calls - calls, 1);
      const { path, body } = xai.requests.at(-1)! as {
        path: string;
        body: { image: { url: string; type: string }; prompt: string };
      };
      assert.equal(path, "/v1/images/edits");
      assert.equal(body.prompt, "make the foxes blue");
      assert.equal(body.image.type, "image_url");
      assert.match(body.image.url, /^data:image\/png;base64,/);
      assert.equal(await page.isHidden("#editing"), true);
      assert.equal(await page.isHidden(`${card(edited)} .more-images`), true);
    });

    await t.step("nothing broke the page's rules (CSP, console, requests)", () => {
      assertClean(watched);
    });
  });
});
