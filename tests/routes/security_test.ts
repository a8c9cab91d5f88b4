/** Attacks on the HTTP surface: fuzzing, limits, token and ticket misuse, and error hygiene. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { getLogger } from "@logtape/logtape";
import { toHttpError } from "../../routes/errors.ts";
import { countingProvider, startTestService } from "../support/app.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const CODES = new Set([
  "invalid_request",
  "unauthorized",
  "not_found",
  "conflict",
  "payload_too_large",
  "rate_limited",
  "unavailable",
  "internal",
]);

async function assertErrorShape(res: Response) {
  assert.ok(res.status < 500, `status ${res.status}`);
  if (res.status < 400) return await res.body?.cancel();
  const body = await res.json();
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.ok(CODES.has(body.error.code), body.error.code);
  assert.equal(typeof body.error.message, "string");
  assert.ok(!/\bat .*\.ts:\d+/.test(body.error.message), "no stack trace");
}

Deno.test({
  name: "fuzzed bodies, headers and paths never get a 5xx and always get the error shape",
  ...opts,
  async fn(t) {
    const service = await startTestService({ provider: countingProvider() });
    const token = await service.token("fuzzer");
    let cases = 0;
    try {
      await t.step("bodies of POST /v1/images", async () => {
        const body = fc.oneof(
          fc.json(),
          fc.string(),
          fc.record({
            prompt: fc.oneof(fc.string(), fc.integer(), fc.constant(null)),
            id: fc.oneof(fc.string(), fc.integer()),
            Prompt: fc.string(),
            Id: fc.string(),
            Token: fc.string(),
            model: fc.string(),
            aspect_ratio: fc.string(),
          }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
        );
        await fc.assert(
          fc.asyncProperty(body, fc.boolean(), async (text, withAuth) => {
            cases++;
            const res = await service.request("/v1/images", {
              method: "POST",
              headers: {
                "Content-Type": "application/json",
                ...(withAuth ? { Authorization: `Bearer ${token}` } : {}),
              },
              body: text,
            });
            await assertErrorShape(res);
          }),
          { numRuns: 400 },
        );
      });
      await t.step("headers", async () => {
        const header = fc.string({ maxLength: 300 }).filter((s) => !/[\r\n\0]/.test(s));
        await fc.assert(
          fc.asyncProperty(header, header, header, async (auth, idem, last) => {
            cases++;
            const headers = new Headers();
            try {
              headers.set("Authorization", auth);
              headers.set("Idempotency-Key", idem);
              headers.set("Last-Event-ID", last);
            } catch {
              return; // not a legal header value; a client cannot send it
            }
            for (const [method, path] of [["POST", "/v1/images"], ["GET", "/v1/jobs/x/events"]]) {
              const res = await service.request(path, {
                method,
                headers,
                body: method === "POST" ? '{"prompt":"x"}' : undefined,
              });
              await assertErrorShape(res);
            }
          }),
          { numRuns: 200 },
        );
      });
      await t.step("paths", async () => {
        const segment = fc.string({ maxLength: 40 }).map(encodeURIComponent);
        await fc.assert(
          fc.asyncProperty(
            fc.constantFrom("/v1/jobs/", "/v1/jobs/", "/v1/", "/", "/v1/images/"),
            segment,
            fc.constantFrom("", "/events", "/x", "?ticket=abc", "/events?last_event_id=zz"),
            fc.constantFrom("GET", "DELETE", "POST", "PUT"),
            async (base, seg, tail, method) => {
              cases++;
              const res = await service.request(base + seg + tail, {
                method,
                headers: { Authorization: `Bearer ${token}` },
              });
              await assertErrorShape(res);
            },
          ),
          { numRuns: 300 },
        );
      });
      console.log(`fuzz cases run: ${cases}`);
      assert.ok(cases >= 900);
    } finally {
      await service.close();
    }
  },
});

Deno.test({
  name: "per-owner and queue limits answer 429 or 503 with Retry-After",
  ...opts,
  async fn(t) {
    await t.step("MAX_ACTIVE_JOBS_PER_OWNER", async () => {
      const service = await startTestService({
        env: { MAX_ACTIVE_JOBS_PER_OWNER: "2" },
        provider: countingProvider({ latencyMs: 2_000 }),
      });
      try {
        const headers = { Authorization: `Bearer ${await service.token("busy")}` };
        const post = () =>
          service.request("/v1/images", { method: "POST", headers, body: '{"prompt":"x"}' });
        assert.equal((await post()).status, 202);
        assert.equal((await post()).status, 202);
        const third = await post();
        assert.equal(third.status, 429);
        assert.ok(Number(third.headers.get("Retry-After")) >= 1);
        assert.equal((await third.json()).error.code, "rate_limited");
        const other = { Authorization: `Bearer ${await service.token("calm")}` };
        const res = await service.request("/v1/images", {
          method: "POST",
          headers: other,
          body: '{"prompt":"x"}',
        });
        assert.equal(res.status, 202);
      } finally {
        await service.close();
      }
    });
    await t.step("MAX_QUEUE_LENGTH", async () => {
      const service = await startTestService({
        env: { MAX_QUEUE_LENGTH: "1", ROLE: "all", WORKER_CONCURRENCY: "1" },
        provider: countingProvider({ latencyMs: 2_000 }),
      });
      try {
        const headers = { Authorization: `Bearer ${await service.token("q")}` };
        const post = () =>
          service.request("/v1/images", { method: "POST", headers, body: '{"prompt":"x"}' });
        assert.equal((await post()).status, 202);
        const full = await post();
        assert.equal(full.status, 503);
        assert.ok(Number(full.headers.get("Retry-After")) >= 1);
        assert.equal((await full.json()).error.code, "unavailable");
      } finally {
        await service.close();
      }
    });
    await t.step("MAX_STREAMS_PER_OWNER", async () => {
      const service = await startTestService({
        env: { MAX_STREAMS_PER_OWNER: "1" },
        provider: countingProvider({ latencyMs: 1_000 }),
      });
      try {
        const headers = { Authorization: `Bearer ${await service.token("watcher")}` };
        const submitted = await service.request("/v1/images", {
          method: "POST",
          headers,
          body: '{"prompt":"x","id":"watched"}',
        });
        assert.equal(submitted.status, 202);
        const first = await service.request("/v1/jobs/watched/events", { headers });
        assert.equal(first.status, 200);
        const second = await service.request("/v1/jobs/watched/events", { headers });
        assert.equal(second.status, 429);
        await second.body?.cancel();
        await first.body?.cancel();
      } finally {
        await service.close();
      }
    });
  },
});

Deno.test({
  name: "oversized tokens and tickets used as bearer tokens are refused with 401",
  ...opts,
  async fn() {
    const service = await startTestService({ provider: countingProvider() });
    try {
      const huge = "eyJ" + "a".repeat(10_000) + ".b.c";
      const res = await service.request("/v1/jobs/x", {
        headers: { Authorization: `Bearer ${huge}` },
      });
      assert.equal(res.status, 401);
      await res.body?.cancel();
      const token = await service.token("tina");
      const submitted = await service.request("/v1/images", {
        method: "POST",
        headers: { Authorization: `Bearer ${token}` },
        body: '{"prompt":"x","id":"tix"}',
      });
      const ticket = new URL((await submitted.json()).urls.events, "http://x").searchParams.get(
        "ticket",
      )!;
      for (
        const [method, path] of [["GET", "/v1/jobs/tix"], ["DELETE", "/v1/jobs/tix"], [
          "POST",
          "/v1/images",
        ]]
      ) {
        const r = await service.request(path, {
          method,
          headers: { Authorization: `Bearer ${ticket}` },
          body: method === "POST" ? '{"prompt":"x"}' : undefined,
        });
        assert.equal(r.status, 401, `${method} ${path}`);
        await r.body?.cancel();
      }
    } finally {
      await service.close();
    }
  },
});

Deno.test("an unexpected error becomes a generic 500 internal body without a stack trace", () => {
  const error = new TypeError("secret internals at lib/foo.ts:12");
  const http = toHttpError(error, getLogger(["imagejobs", "test"]));
  assert.equal(http.status, 500);
  const body = http.toBody();
  assert.deepEqual(body, {
    error: { code: "internal", message: "Cannot complete the request: internal error" },
  });
});

Deno.test({
  name: "CORS answers only the origins listed in CORS_ORIGINS",
  ...opts,
  async fn(t) {
    const service = await startTestService({
      env: { CORS_ORIGINS: "https://app.example" },
      provider: countingProvider(),
    });
    const preflight = (origin: string) =>
      service.request("/v1/images", {
        method: "OPTIONS",
        headers: {
          Origin: origin,
          "Access-Control-Request-Method": "POST",
          "Access-Control-Request-Headers": "authorization,content-type",
        },
      });
    try {
      await t.step("a listed origin is allowed", async () => {
        const res = await preflight("https://app.example");
        assert.equal(res.headers.get("Access-Control-Allow-Origin"), "https://app.example");
        await res.body?.cancel();
      });
      await t.step("any other origin gets no CORS grant", async () => {
        const res = await preflight("https://evil.example");
        assert.equal(res.headers.get("Access-Control-Allow-Origin"), null);
        await res.body?.cancel();
      });
    } finally {
      await service.close();
    }
    const closed = await startTestService({ provider: countingProvider() });
    try {
      const res = await closed.request("/v1/images", {
        method: "OPTIONS",
        headers: { Origin: "https://app.example", "Access-Control-Request-Method": "POST" },
      });
      assert.equal(
        res.headers.get("Access-Control-Allow-Origin"),
        null,
        "no CORS without CORS_ORIGINS",
      );
      await res.body?.cancel();
    } finally {
      await closed.close();
    }
  },
});
