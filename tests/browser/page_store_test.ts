/** The page in chromium with images in an S3-compatible store and the image routes redirecting there. */
import assert from "node:assert/strict";
import { S3_KEY, startS3 } from "../support/s3_server.ts";
import {
  assertClean,
  generate,
  loadedImage,
  OPTIONS,
  signInWithDevToken,
  waitForStatus,
  withSetup,
} from "./page_helpers.ts";

Deno.test(
  "with IMAGE_STORE_REDIRECT=1 the page shows a job's image from the store, within its CSP",
  OPTIONS,
  async () => {
    const s3 = await startS3();
    try {
      const env = {
        IMAGE_STORE_URL: `s3://${s3.bucket}/page`,
        S3_ENDPOINT: s3.url,
        AWS_ACCESS_KEY_ID: S3_KEY.accessKeyId,
        AWS_SECRET_ACCESS_KEY: S3_KEY.secretAccessKey,
        IMAGE_STORE_REDIRECT: "1",
      };
      await withSetup(env, async ({ service, browser }) => {
        const watched = await signInWithDevToken(browser, service.url);
        const id = await generate(watched.page, "a red fox in snow");
        await waitForStatus(watched.page, id, "succeeded");
        const image = await loadedImage(watched.page, id);
        assert.ok(image.width > 0, "the image loaded through the redirect");
        assert.ok(
          s3.gets(`page/${id}/1/0.png`) + s3.gets(`page/${id}/1/0.jpg`) >= 1,
          "from the store",
        );
        assertClean(watched);
      });
    } finally {
      await s3.stop();
    }
  },
);
