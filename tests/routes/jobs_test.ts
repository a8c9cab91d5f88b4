/** Tests of GET and DELETE /v1/jobs/:id: status, results, failures and cancels. */
import assert from "node:assert/strict";
import { PermanentError } from "../../lib/errors.ts";
import {
  bearer,
  countingProvider,
  readSse,
  submitJob,
  type TestService,
  waitForStatus,
  withService,
} from "../support/app.ts";

async function call(
  service: TestService,
  path: string,
  token: string,
  method = "GET",
): Promise<{ status: number; body: unknown }> {
  const response = await service.request(path, { method, headers: bearer(token) });
  const type = response.headers.get("Content-Type") ?? "";
  const body = type.includes("json") ? await response.json() : await response.text();
  return { status: response.status, body };
}

Deno.test("GET /v1/jobs/:id returns a succeeded job with its image", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const before = Date.now();
    const { body: submitted } = await submitJob(service, token, { prompt: "  a red fox  " });
    await waitForStatus(service, token, submitted.id, ["succeeded", "failed"]);
    const { status, body } = await call(service, `/v1/jobs/${submitted.id}`, token);
    assert.equal(status, 200);
    const job = body as Record<string, unknown> & { result: Record<string, unknown> };
    assert.equal(job.id, submitted.id);
    assert.equal(job.status, "succeeded");
    assert.equal(job.prompt, "a red fox");
    assert.equal(job.created_at, submitted.created_at);
    assert.ok(Date.parse(job.updated_at as string) >= Date.parse(job.created_at as string));
    assert.ok(Date.parse(job.updated_at as string) >= before - 1000);
    assert.equal(job.attempts, 1);
    assert.match(job.result.image as string, /^data:image\/png;base64,[A-Za-z0-9+/]+=*$/);
    assert.equal(job.result.mime_type, "image/png");
    assert.equal(job.result.revised_prompt, "revised");
    assert.equal(job.error, undefined);
  });
});

Deno.test("GET /v1/jobs/:id reports a failed job's error and no result", async () => {
  const provider = countingProvider({ fail: () => new PermanentError("Provider refused") });
  await withService(async (service) => {
    const token = await service.token("alice");
    const { body: submitted } = await submitJob(service, token);
    const job = await waitForStatus(service, token, submitted.id, ["succeeded", "failed"]);
    assert.equal(job.status, "failed");
    assert.equal(job.error, "Error processing job");
    assert.equal(job.result, undefined);
    assert.equal(job.attempts, 1);
    assert.equal(provider.calls, 1);
  }, { provider });
});

Deno.test("GET /v1/jobs/:id shows a waiting job without a result or an error", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const { body: submitted } = await submitJob(service, token);
    const { status, body } = await call(service, `/v1/jobs/${submitted.id}`, token);
    assert.equal(status, 200);
    const job = body as Record<string, unknown>;
    assert.ok(["queued", "running"].includes(job.status as string), String(job.status));
    assert.equal(job.result, undefined);
    assert.equal(job.error, undefined);
  }, { provider: countingProvider({ latencyMs: 300 }) });
});

Deno.test("another owner's job answers 404 exactly like an unknown id", async (t) => {
  await withService(async (service) => {
    const alice = await service.token("alice");
    const bob = await service.token("bob");
    const { body: submitted } = await submitJob(service, alice);
    await waitForStatus(service, alice, submitted.id, ["succeeded"]);
    const paths: [string, string, string][] = [
      ["GET", `/v1/jobs/${submitted.id}`, "/v1/jobs/no-such-job"],
      ["DELETE", `/v1/jobs/${submitted.id}`, "/v1/jobs/no-such-job"],
      ["GET", `/v1/jobs/${submitted.id}/events`, "/v1/jobs/no-such-job/events"],
    ];
    for (const [method, theirs, unknown] of paths) {
      await t.step(`${method} ${theirs.endsWith("/events") ? "events" : "job"}`, async () => {
        const foreign = await call(service, theirs, bob, method);
        const missing = await call(service, unknown, bob, method);
        assert.equal(foreign.status, 404);
        assert.equal(missing.status, 404);
        assert.deepEqual(foreign.body, missing.body);
        assert.equal((foreign.body as { error: { code: string } }).error.code, "not_found");
      });
    }
    await t.step("and the owner still sees it", async () => {
      const mine = await call(service, `/v1/jobs/${submitted.id}`, alice);
      assert.equal(mine.status, 200);
    });
  });
});

Deno.test("GET /v1/jobs/:id answers 401 without a token", async () => {
  await withService(async (service) => {
    const response = await service.request("/v1/jobs/anything");
    assert.equal(response.status, 401);
    const body = await response.json();
    assert.equal(body.error.code, "unauthorized");
  });
});

Deno.test("a malformed job id answers 401 to nobody and 404 to a caller", async (t) => {
  await withService(async (service) => {
    const token = await service.token("alice");
    for (const method of ["GET", "DELETE"]) {
      for (const id of ["a%20b", "a%2Fb", "x".repeat(129)]) {
        await t.step(`${method} ${id.slice(0, 12)}`, async () => {
          const anonymous = await service.request(`/v1/jobs/${id}`, { method });
          assert.equal(anonymous.status, 401);
          assert.equal((await anonymous.json()).error.code, "unauthorized");
          const res = await call(service, `/v1/jobs/${id}`, token, method);
          assert.equal(res.status, 404);
          assert.deepEqual(Object.keys(res.body as object), ["error"]);
          assert.equal((res.body as { error: { code: string } }).error.code, "not_found");
        });
      }
    }
  });
});

Deno.test("DELETE /v1/jobs/:id cancels a job that has not ended", async (t) => {
  const gate = Promise.withResolvers<void>();
  // "first" answers only when aborted (or at the end); anything else answers at once.
  const provider = countingProvider({ gate: gate.promise, holds: (prompt) => prompt === "first" });
  await withService(async (service) => {
    const token = await service.token("alice");
    const running = await submitJob(service, token, { prompt: "first" });
    const queued = await submitJob(service, token, { prompt: "second" });
    await waitForStatus(service, token, running.body.id, ["running"]);
    const variants: [string, string, string][] = [
      ["while it is queued", queued.body.id, "queued"],
      ["while it runs", running.body.id, "running"],
    ];
    for (const [name, id, expected] of variants) {
      await t.step(name, async () => {
        const seen = await call(service, `/v1/jobs/${id}`, token);
        assert.equal((seen.body as { status: string }).status, expected);
        const canceled = await call(service, `/v1/jobs/${id}`, token, "DELETE");
        assert.equal(canceled.status, 202);
        assert.deepEqual(canceled.body, { id, status: "canceled" });
        const after = await call(service, `/v1/jobs/${id}`, token);
        assert.equal((after.body as { status: string }).status, "canceled");
      });
    }
    await t.step("and it never succeeds afterwards", async () => {
      // One worker slot and a FIFO queue: once a job submitted after both has succeeded, the worker
      // is past both canceled ones.
      const sentinel = await submitJob(service, token, { prompt: "sentinel" });
      await waitForStatus(service, token, sentinel.body.id, ["succeeded"]);
      assert.equal(provider.aborted, 1, "the running provider call was aborted");
      assert.deepEqual(Object.fromEntries(provider.byPrompt), { first: 1, sentinel: 1 });
      for (const id of [running.body.id, queued.body.id]) {
        const job = (await call(service, `/v1/jobs/${id}`, token)).body as Record<string, unknown>;
        assert.equal(job.status, "canceled");
        assert.equal(job.result, undefined);
        const events = await readSse(
          await service.request(`/v1/jobs/${id}/events`, { headers: bearer(token) }),
        );
        const terminal = events.filter((e) =>
          ["succeeded", "failed", "canceled"].includes(e.event!)
        );
        assert.deepEqual(terminal.map((e) => e.event), ["canceled"]);
      }
    });
    await t.step("a second DELETE answers 409", async () => {
      const again = await call(service, `/v1/jobs/${running.body.id}`, token, "DELETE");
      assert.equal(again.status, 409);
      assert.equal((again.body as { error: { code: string } }).error.code, "conflict");
    });
    gate.resolve();
  }, {
    provider,
    env: { WORKER_CONCURRENCY: "1" },
  });
});

Deno.test("DELETE /v1/jobs/:id answers 409 for a job that already succeeded", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const { body: submitted } = await submitJob(service, token);
    await waitForStatus(service, token, submitted.id, ["succeeded"]);
    const res = await call(service, `/v1/jobs/${submitted.id}`, token, "DELETE");
    assert.equal(res.status, 409);
    assert.equal((res.body as { error: { code: string } }).error.code, "conflict");
    const job = await call(service, `/v1/jobs/${submitted.id}`, token);
    assert.equal((job.body as { status: string }).status, "succeeded");
  });
});
