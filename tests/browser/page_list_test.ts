/** The page's "My jobs" list and its error messages, in chromium against the real service. */
import assert from "node:assert/strict";
import {
  assertClean,
  generate,
  OPTIONS,
  type PageGlobals,
  PHONE,
  signInWithDevToken,
  token,
  withSetup,
} from "./page_helpers.ts";
import { openPage } from "../support/browser.ts";
import { submit, waitForStatus as waitForJob } from "../e2e/e2e_helpers.ts";
import { PAGE_SIZE } from "../../routes/static/history.js";

Deno.test("My jobs lists a pasted JWT's jobs newest first, a page at a time", OPTIONS, async () => {
  await withSetup({}, async ({ service, browser }) => {
    const answer = await fetch(`${service.url}/v1/dev/token`, {
      method: "POST",
      body: JSON.stringify({ sub: "pager" }),
    });
    const { token: jwt } = await answer.json();
    const total = PAGE_SIZE + 2;
    const ids = Array.from({ length: total }, (_, i) => `pager-${String(i).padStart(2, "0")}`);
    for (const id of ids) {
      const sent = await submit(service.url, jwt, { id, prompt: `picture ${id}` });
      assert.equal(sent.status, 202);
    }
    for (const id of ids) await waitForJob(service.url, jwt, id, ["succeeded"]);

    const watched = await openPage(browser);
    const { page } = watched;
    await page.goto(`${service.url}/`);
    assert.equal(await page.isHidden("#dev-token"), false);
    await page.fill("#token", jwt);
    await page.click("#token-form button[type=submit]");
    await page.waitForSelector("#live[data-state=live]");
    assert.equal(await page.textContent("#who-name"), "pager");
    assert.ok(!page.url().includes(jwt.slice(0, 20)), "the token never goes in the URL");

    const listed = () =>
      page.locator("#history > .item").evaluateAll((items) =>
        items.map((item) => (item as unknown as { dataset: { id: string } }).dataset.id)
      );
    await page.waitForSelector("#history > .item");
    const newest = [...ids].reverse();
    assert.deepEqual(await listed(), newest.slice(0, PAGE_SIZE));
    await page.click("#history-more");
    await page.waitForSelector("#history-more", { state: "hidden" });
    assert.deepEqual(await listed(), newest);
    const thumbnail = page.locator(`#history > .item[data-id="${ids[0]}"] img`);
    await thumbnail.waitFor();
    assert.match((await thumbnail.getAttribute("src"))!, /\/v1\/jobs\/pager-00\/image/);
    await watched.screenshot("page-my-jobs");

    await page.setViewportSize(PHONE);
    const width = await page.evaluate(() =>
      (globalThis as unknown as PageGlobals).document.documentElement.scrollWidth
    );
    assert.ok(width <= PHONE.width, `scrollWidth ${width}`);
    assertClean(watched);
  });
});

Deno.test(
  "submit errors read as sentences next to their field: 422, 401, 429",
  OPTIONS,
  async (t) => {
    await withSetup({ RATE_LIMIT_PER_MINUTE: "1" }, async ({ service, browser }) => {
      const watched = await signInWithDevToken(browser, service.url);
      const { page } = watched;
      // The answers these steps cause are logged by the browser as failed loads.
      watched.expect(/Failed to load resource: the server responded with a status of 4(22|01|29)/);

      await t.step("422 names the prompt, next to the prompt", async () => {
        await page.fill("#prompt", "   ");
        await page.click("#generate");
        await page.waitForSelector("#prompt-error:not(:empty)");
        assert.match((await page.textContent("#prompt-error"))!, /^Prompt must /);
        assert.equal(await page.getAttribute("#prompt", "aria-invalid"), "true");
        await watched.screenshot("page-422-next-to-prompt");
        assert.equal(await page.locator("#cards > .card").count(), 0);
      });

      await t.step("401 says the token was refused", async () => {
        const good = await token(page);
        await page.evaluate(() => sessionStorage.setItem("imagejobs.token", "aaa.bbb.ccc"));
        await page.fill("#prompt", "a fox");
        await page.click("#generate");
        await page.waitForSelector("#submit-error:not(:empty)");
        assert.match((await page.textContent("#submit-error"))!, /^Your token was refused/);
        assert.equal(await page.textContent("#prompt-error"), "");
        await page.evaluate((jwt) => sessionStorage.setItem("imagejobs.token", jwt), good);
      });

      await t.step("429 gives the wait and holds the button", async () => {
        await generate(page, "a fox");
        await page.fill("#prompt", "a second fox");
        await page.click("#generate");
        await page.waitForSelector("#submit-error:not(:empty)");
        assert.match(
          (await page.textContent("#submit-error"))!,
          /^Too many requests: try again in \d+ s\.$/,
        );
        assert.equal(await page.isDisabled("#generate"), true);
        assert.equal(await page.locator("#cards > .card").count(), 1);
      });

      await t.step("a pasted token the service refuses signs out with the reason", async () => {
        const other = await openPage(browser);
        other.expect(/Failed to load resource: the server responded with a status of 401/);
        await other.page.goto(`${service.url}/`);
        await other.page.fill("#token", "aaa.bbb.ccc");
        await other.page.click("#token-form button[type=submit]");
        await other.page.waitForSelector("#token-error:not(:empty)");
        assert.match((await other.page.textContent("#token-error"))!, /Your token was refused/);
        assert.equal(await other.page.isVisible("#sign-in"), true);
        assert.deepEqual(other.problems(), []);
        await other.close();
      });

      await t.step("with no other console error and no CSP violation", () => assertClean(watched));
    });
  },
);
