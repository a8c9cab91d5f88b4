/** `/docs` in chromium with every request beyond 127.0.0.1 aborted: the reference renders anyway. */
import assert from "node:assert/strict";
import { openPage } from "../support/browser.ts";
import { assertClean, OPTIONS, withSetup } from "./page_helpers.ts";

Deno.test(
  "/docs renders the API reference with no network beyond the service",
  OPTIONS,
  async () => {
    await withSetup({}, async ({ service, browser }) => {
      const watched = await openPage(browser);
      const { page } = watched;
      const response = await page.goto(`${service.url}/docs`);
      assert.equal(response?.status(), 200);
      await page.getByText("Submit an image job").first().waitFor();
      await page.getByText("Image job service", { exact: true }).first().waitFor();
      await watched.screenshot("docs-offline");
      assertClean(watched);
    });
  },
);
