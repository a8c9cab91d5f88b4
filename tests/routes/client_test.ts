/** The typed client: `hc<AppType>` submits a job and reads it back from the real app on a port. */
import assert from "node:assert/strict";
import { hc } from "hono/client";
import type { AppType } from "../../routes/app.ts";
import { serveTestService, withService } from "../support/app.ts";

/** Compiles only when the value's type is not `any`: the client's answers must be typed. */
function typed<T>(value: 0 extends 1 & T ? never : T): T {
  return value;
}

Deno.test("hc<AppType> submits a job and reads it back with typed answers", async (t) => {
  await withService(async (service) => {
    const server = serveTestService(service);
    try {
      const token = await service.token("alice");
      const client = hc<AppType>(server.origin, { headers: { Authorization: `Bearer ${token}` } });
      let id = "";
      await t.step("POST /v1/images answers 202 with the submit answer", async () => {
        const res = await client.v1.images.$post({
          json: { prompt: "a typed fox", aspect_ratio: "16:9" },
          header: {},
        });
        assert.equal(res.status, 202);
        if (res.status !== 202) return;
        const body = typed(await res.json());
        assert.equal(body.status, "queued");
        assert.equal(body.urls.self, `/v1/jobs/${encodeURIComponent(body.id)}`);
        assert.equal(res.headers.get("Location"), body.urls.self);
        id = body.id;
      });
      await t.step(
        "GET /v1/jobs/{id} answers the job, with its result once it succeeded",
        async () => {
          const deadline = Date.now() + 10_000;
          for (;;) {
            const res = await client.v1.jobs[":id"].$get({ param: { id } });
            assert.equal(res.status, 200);
            if (res.status !== 200) return;
            const job = typed(await res.json());
            assert.equal(job.id, id);
            assert.equal(job.aspect_ratio, "16:9");
            if (job.status === "succeeded") {
              assert.equal(job.prompt, "a typed fox");
              assert.equal(job.result?.mime_type, "image/png");
              assert.match(job.result?.image ?? "", /^data:image\/png;base64,/);
              break;
            }
            assert.ok(Date.now() < deadline, `job still ${job.status}`);
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        },
      );
      await t.step("errors come back typed as the contract's error body", async () => {
        const res = await client.v1.jobs[":id"].$delete({ param: { id } });
        assert.equal(res.status, 409);
        if (res.status !== 409) return;
        const body = typed(await res.json());
        assert.equal(body.error.code, "conflict");
        const missing = await client.v1.jobs[":id"].$get({ param: { id: "no-such-job" } });
        assert.equal(missing.status, 404);
        if (missing.status !== 404) return;
        assert.equal(typed(await missing.json()).error.code, "not_found");
      });
      await t.step("and the operations routes are typed too", async () => {
        const res = await client.readyz.$get();
        assert.equal(res.status, 200);
        if (res.status !== 200) return;
        assert.deepEqual(typed(await res.json()), { status: "ready", broker: "memory" });
      });
    } finally {
      await server.close();
    }
  });
});
