/** Tests of POST /v1/images: submit, idempotency, the seed body, limits and validation. */
import assert from "node:assert/strict";
import {
  bearer,
  countingProvider,
  delay,
  signToken,
  submitJob,
  type TestService,
  waitForStatus,
  withService,
} from "../support/app.ts";

function assertErrorBody(body: unknown, code: string): void {
  const error = (body as { error?: { code?: unknown; message?: unknown } }).error;
  assert.ok(error, `expected an error body, got ${JSON.stringify(body)}`);
  assert.equal(error.code, code);
  assert.equal(typeof error.message, "string");
  assert.ok((error.message as string).length > 0);
  assert.deepEqual(Object.keys(body as object), ["error"]);
}

async function post(
  service: TestService,
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: unknown; headers: Headers }> {
  const response = await service.request("/v1/images", { method: "POST", headers, body });
  return { status: response.status, body: await response.json(), headers: response.headers };
}

Deno.test("POST /v1/images refuses a caller without a valid token", async (t) => {
  await withService(async (service) => {
    const body = JSON.stringify({ prompt: "a fox" });
    await t.step("without an Authorization header", async () => {
      const res = await post(service, body, { "Content-Type": "application/json" });
      assert.equal(res.status, 401);
      assertErrorBody(res.body, "unauthorized");
    });
    await t.step("with a malformed token", async () => {
      const res = await post(service, body, bearer("not-a-jwt"));
      assert.equal(res.status, 401);
      assertErrorBody(res.body, "unauthorized");
    });
    await t.step("with a token signed by another secret", async () => {
      const token = await signToken("alice", { secret: "another-secret-0123456789-abcdefghij" });
      const res = await post(service, body, bearer(token));
      assert.equal(res.status, 401);
      assertErrorBody(res.body, "unauthorized");
    });
    await t.step("with an expired token", async () => {
      const token = await service.token("alice", {
        expiresIn: Math.floor(Date.now() / 1000) - 600,
      });
      const res = await post(service, body, bearer(token));
      assert.equal(res.status, 401);
      assertErrorBody(res.body, "unauthorized");
    });
  });
});

Deno.test("POST /v1/images queues a job that then succeeds", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const before = Date.now();
    const { response, body } = await submitJob(service, token, { prompt: "a red fox in snow" });
    assert.equal(response.status, 202);
    assert.equal(typeof body.id, "string");
    assert.equal(body.status, "queued");
    const created = Date.parse(body.created_at);
    assert.ok(created >= before - 1000 && created <= Date.now() + 1000, body.created_at);
    assert.equal(new Date(created).toISOString(), body.created_at);
    const id = encodeURIComponent(body.id);
    assert.equal(body.urls.self, `/v1/jobs/${id}`);
    assert.match(body.urls.events, new RegExp(`^/v1/jobs/${id}/events\\?ticket=[^&]+$`));
    assert.match(body.urls.websocket, /^\/v1\/ws\?ticket=[^&]+$/);
    assert.equal(response.headers.get("Location"), `/v1/jobs/${id}`);
    const job = await waitForStatus(service, token, body.id, ["succeeded", "failed"]);
    assert.equal(job.status, "succeeded");
  });
});

Deno.test("POST /v1/images accepts the seed body with its Token and no Authorization header", async () => {
  await withService(async (service) => {
    const token = await service.token("seed-user");
    const res = await post(
      service,
      JSON.stringify({ Token: token, Prompt: "a seed fox", Id: "seed-job-1" }),
      { "Content-Type": "application/json" },
    );
    assert.equal(res.status, 202);
    const body = res.body as { id: string; status: string };
    assert.equal(body.id, "seed-job-1");
    assert.equal(body.status, "queued");
    const job = await waitForStatus(service, token, "seed-job-1", ["succeeded", "failed"]);
    assert.equal(job.status, "succeeded");
    assert.equal(job.prompt, "a seed fox");
  });
});

Deno.test("POST /v1/images is idempotent per owner", async (t) => {
  const variants: [string, (key: string) => [Record<string, unknown>, Record<string, string>]][] = [
    ["by the body id", (key) => [{ prompt: "a fox", id: key }, {}]],
    ["by the Idempotency-Key header", (key) => [{ prompt: "a fox" }, { "Idempotency-Key": key }]],
  ];
  for (const [name, make] of variants) {
    await t.step(name, async () => {
      const provider = countingProvider();
      await withService(async (service) => {
        const alice = await service.token("alice");
        const key = `idem-${crypto.randomUUID()}`;
        const [body, headers] = make(key);
        const first = await submitJob(service, alice, body, headers);
        assert.equal(first.response.status, 202);
        assert.equal(first.body.id, key);
        await waitForStatus(service, alice, key, ["succeeded"]);
        const again = await submitJob(service, alice, body, headers);
        assert.equal(again.response.status, 200);
        assert.equal(again.body.id, key);
        assert.equal(again.body.created_at, first.body.created_at);
        assert.equal(again.body.status, "succeeded");
        // One worker slot and a FIFO queue: any work the replay had queued would run first.
        const sentinel = await submitJob(service, alice, { prompt: "sentinel" });
        await waitForStatus(service, alice, sentinel.body.id, ["succeeded"]);
        assert.deepEqual(Object.fromEntries(provider.byPrompt), { "a fox": 1, sentinel: 1 });
        const bob = await service.token("bob");
        const other = await submitJob(service, bob, body, headers);
        assert.equal(other.response.status, 409);
        assertErrorBody(other.body, "conflict");
        assert.equal(provider.byPrompt.get("a fox"), 1);
      }, { provider, env: { WORKER_CONCURRENCY: "1" } });
    });
  }
});

Deno.test("POST /v1/images answers 422 for an invalid job", async (t) => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const cases: [string, Record<string, unknown>, Record<string, string>?][] = [
      ["an empty prompt", { prompt: "" }],
      ["a whitespace-only prompt", { prompt: " \n\t " }],
      ["a missing prompt", {}],
      ["a 4001-character prompt", { prompt: "x".repeat(4001) }],
      ["an id with a space", { prompt: "a fox", id: "bad id" }],
      ["an id with a slash", { prompt: "a fox", id: "a/b" }],
      ["a 129-character id", { prompt: "a fox", id: "a".repeat(129) }],
      ["a bad aspect_ratio", { prompt: "a fox", aspect_ratio: "wide" }],
      ["a bad Idempotency-Key", { prompt: "a fox" }, { "Idempotency-Key": "has space" }],
    ];
    for (const [name, body, headers] of cases) {
      await t.step(name, async () => {
        const res = await submitJob(service, token, body, headers);
        assert.equal(res.response.status, 422);
        assertErrorBody(res.body, "invalid_request");
      });
    }
    await t.step("but accepts a 4000-character prompt", async () => {
      const res = await submitJob(service, token, { prompt: ` ${"x".repeat(4000)} ` });
      assert.equal(res.response.status, 202);
    });
  });
});

Deno.test("POST /v1/images answers 400 for a body that is not a JSON object", async (t) => {
  await withService(async (service) => {
    const token = await service.token("alice");
    for (const [name, text] of [["malformed JSON", "{prompt:"], ["a JSON array", "[]"]]) {
      await t.step(name, async () => {
        const res = await post(service, text, bearer(token));
        assert.equal(res.status, 400);
        assertErrorBody(res.body, "invalid_request");
      });
    }
  });
});

Deno.test("POST /v1/images answers 413 for a body above 64 KiB", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const text = JSON.stringify({ prompt: "a fox", pad: "x".repeat(64 * 1024) });
    const res = await post(service, text, bearer(token));
    assert.equal(res.status, 413);
    assertErrorBody(res.body, "payload_too_large");
  });
});

Deno.test("POST /v1/images makes unguessable, distinct ids", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { response, body } = await submitJob(service, token, { prompt: `fox ${i}` });
      assert.equal(response.status, 202);
      assert.match(body.id, /^[A-Za-z0-9_-]{22,}$/);
      ids.add(body.id);
    }
    assert.equal(ids.size, 20);
  });
});

Deno.test("POST /v1/images answers 429 with Retry-After over the rate limit", async () => {
  await withService(async (service) => {
    // The limiter counts fixed one-minute windows: stay clear of a window edge.
    const toEdge = 60_000 - (Date.now() % 60_000);
    if (toEdge < 3_000) await delay(toEdge + 50);
    const token = await service.token("alice");
    assert.equal((await submitJob(service, token)).response.status, 202);
    assert.equal((await submitJob(service, token)).response.status, 202);
    const third = await submitJob(service, token);
    assert.equal(third.response.status, 429);
    assertErrorBody(third.body, "rate_limited");
    const retryAfter = Number(third.response.headers.get("Retry-After"));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `${retryAfter}`);
    const other = await submitJob(service, await service.token("bob"));
    assert.equal(other.response.status, 202);
  }, { env: { RATE_LIMIT_PER_MINUTE: "2" } });
});

Deno.test("POST /v1/images reads the body as JSON whatever its Content-Type says", async (t) => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const body = JSON.stringify({ prompt: "a fox in plain text" });
    for (const [name, type] of [["text/plain", "text/plain;charset=UTF-8"], ["none", undefined]]) {
      await t.step(`Content-Type ${name}`, async () => {
        const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
        if (type) headers["Content-Type"] = type;
        const res = await post(service, body, headers);
        assert.equal(res.status, 202);
        const job = await waitForStatus(service, token, (res.body as { id: string }).id, [
          "succeeded",
        ]);
        assert.equal(job.prompt, "a fox in plain text");
      });
    }
    await t.step("and an empty body is still a 400", async () => {
      const res = await post(service, "", bearer(token));
      assert.equal(res.status, 400);
      assertErrorBody(res.body, "invalid_request");
    });
  });
});

Deno.test("POST /v1/images checks the caller before the body's fields", async (t) => {
  await withService(async (service) => {
    const cases: [string, string, Record<string, string>][] = [
      ["an empty prompt", '{"prompt":""}', {}],
      ["a bad id", '{"prompt":"a fox","id":"a b"}', {}],
      ["a bad Idempotency-Key", '{"prompt":"a fox"}', { "Idempotency-Key": "a b" }],
      ["a bad seed Token and no Prompt", '{"Token":"not-a-jwt"}', {}],
    ];
    for (const [name, body, headers] of cases) {
      await t.step(`${name} from nobody: 401`, async () => {
        const res = await post(service, body, { "Content-Type": "application/json", ...headers });
        assert.equal(res.status, 401);
        assertErrorBody(res.body, "unauthorized");
      });
    }
    await t.step("a seed body whose Token is valid but Prompt empty: 422", async () => {
      const token = await service.token("seed-user");
      const res = await post(service, JSON.stringify({ Token: token, Prompt: " " }), {
        "Content-Type": "application/json",
      });
      assert.equal(res.status, 422);
      assertErrorBody(res.body, "invalid_request");
      assert.match((res.body as { error: { message: string } }).error.message, /\bPrompt\b/);
    });
  });
});

Deno.test("POST /v1/images takes prompt over Prompt, and refuses a bad prompt beside a good Prompt", async (t) => {
  await withService(async (service) => {
    const token = await service.token("alice");
    await t.step("both valid: prompt wins", async () => {
      const { response, body } = await submitJob(service, token, { prompt: "fox", Prompt: "owl" });
      assert.equal(response.status, 202);
      const job = await waitForStatus(service, token, body.id, ["succeeded"]);
      assert.equal(job.prompt, "fox");
    });
    for (const prompt of ["", 5, null]) {
      await t.step(`prompt ${JSON.stringify(prompt)} beside a valid Prompt: 422`, async () => {
        const res = await submitJob(service, token, { prompt, Prompt: "owl" });
        assert.equal(res.response.status, 422);
        assertErrorBody(res.body, "invalid_request");
        assert.match(res.body.error.message, /^Cannot accept the request: prompt /);
      });
    }
    await t.step("a missing prompt is named as required", async () => {
      const res = await submitJob(service, token, {});
      assert.equal(res.response.status, 422);
      assert.equal(res.body.error.message, "Cannot accept the request: prompt is required");
    });
  });
});
