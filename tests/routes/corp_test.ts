/** With CORS_ORIGINS, a job's image bytes may be shown by those origins' pages (CORP cross-origin). */
import assert from "node:assert/strict";
import { bearer, startTestService, submitJob, waitForStatus } from "../support/app.ts";

for (const cors of [true, false]) {
  Deno.test({
    name: `image answers carry Cross-Origin-Resource-Policy ${
      cors ? "cross-origin with" : "same-origin without"
    } CORS_ORIGINS`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const env: Record<string, string> = cors ? { CORS_ORIGINS: "https://page.example" } : {};
      const service = await startTestService({ env });
      try {
        const token = await service.token("pic");
        const { body } = await submitJob(service, token, { prompt: "a fox", n: 2 });
        const job = await waitForStatus(service, token, body.id, ["succeeded"]);
        const expected = cors ? "cross-origin" : "same-origin";
        for (const url of [job.urls.image, job.result.images[1].url]) {
          const res = await service.request(url);
          assert.equal(res.status, 200, url);
          assert.equal(res.headers.get("Cross-Origin-Resource-Policy"), expected, url);
          await res.body?.cancel();
        }
        const doc = await service.request(`/v1/jobs/${body.id}`, { headers: bearer(token) });
        assert.equal(doc.headers.get("Cross-Origin-Resource-Policy"), "same-origin");
        await doc.body?.cancel();
      } finally {
        await service.close();
      }
    },
  });
}
