import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { exportSPKI, generateKeyPair } from "jose";
import {
  bearer,
  countingProvider,
  startTestService,
  submitJob,
  type TestService,
  waitForStatus,
} from "../support/app.ts";

async function withService(
  fn: (service: TestService) => Promise<void>,
  env: Record<string, string> = {},
): Promise<void> {
  const service = await startTestService({ provider: countingProvider(), env });
  try {
    await fn(service);
  } finally {
    await service.close();
  }
}

Deno.test("GET /healthz answers 200", async () => {
  await withService(async (service) => {
    const response = await service.request("/healthz");
    assert.equal(response.status, 200);
    await response.body?.cancel();
  });
});

Deno.test("GET /readyz answers 200 with the memory broker", async () => {
  await withService(async (service) => {
    const response = await service.request("/readyz");
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.broker, "memory");
  });
});

Deno.test("GET /metrics serves Prometheus text that counts submissions", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const { body } = await submitJob(service, token);
    await waitForStatus(service, token, body.id, ["succeeded"]);
    const response = await service.request("/metrics");
    assert.equal(response.status, 200);
    assert.match(response.headers.get("Content-Type") ?? "", /^text\/plain/);
    const text = await response.text();
    assert.match(text, /^# TYPE jobs_submitted_total counter$/m);
    assert.match(text, /^jobs_submitted_total\{result="created"\} 1$/m);
    assert.match(text, /^jobs_finished_total\{status="succeeded"\} 1$/m);
    assert.match(text, /^worker_jobs_in_flight 0$/m);
    assert.match(text, /^http_request_duration_seconds_count\{.*\} \d+$/m);
  });
});

Deno.test("GET /openapi.json is an OpenAPI 3.1 document listing the v1 routes", async () => {
  await withService(async (service) => {
    const response = await service.request("/openapi.json");
    assert.equal(response.status, 200);
    const document = await response.json();
    assert.match(document.openapi, /^3\.1\./);
    assert.equal(typeof document.info.title, "string");
    for (const path of ["/v1/images", "/v1/jobs/{id}", "/v1/jobs/{id}/events"]) {
      assert.ok(path in document.paths, `${path} is listed`);
    }
    assert.ok(document.paths["/v1/images"].post);
  });
});

Deno.test("GET / serves an HTML page with a Content-Security-Policy", async () => {
  await withService(async (service) => {
    const response = await service.request("/");
    assert.equal(response.status, 200);
    assert.match(response.headers.get("Content-Type") ?? "", /^text\/html/);
    const csp = response.headers.get("Content-Security-Policy") ?? "";
    assert.match(csp, /default-src 'self'/);
    assert.match(await response.text(), /<!doctype html>/i);
  });
});

Deno.test("every response carries X-Request-Id and X-Content-Type-Options", async (t) => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const cases: [string, string, RequestInit][] = [
      ["a health check", "/healthz", {}],
      ["the web page", "/", {}],
      ["a submission", "/v1/images", {
        method: "POST",
        headers: bearer(token),
        body: JSON.stringify({ prompt: "a fox" }),
      }],
      ["an unknown route", "/no/such/route", {}],
      ["a refused token", "/v1/jobs/some-job", { headers: bearer("bad") }],
      ["an unknown job", "/v1/jobs/some-job", { headers: bearer(token) }],
    ];
    for (const [name, path, init] of cases) {
      await t.step(name, async () => {
        const response = await service.request(path, init);
        await response.body?.cancel();
        assert.equal(response.headers.get("X-Content-Type-Options"), "nosniff");
        assert.match(response.headers.get("X-Request-Id") ?? "", /^[\w-]{8,}$/);
      });
    }
    await t.step("and a caller's valid X-Request-Id is echoed", async () => {
      const response = await service.request("/healthz", {
        headers: { "X-Request-Id": "caller-id-123" },
      });
      await response.body?.cancel();
      assert.equal(response.headers.get("X-Request-Id"), "caller-id-123");
    });
  });
});

Deno.test("an unknown route answers 404 with the error body", async () => {
  await withService(async (service) => {
    const response = await service.request("/v1/nothing-here");
    assert.equal(response.status, 404);
    const body = await response.json();
    assert.equal(body.error.code, "not_found");
    assert.equal(typeof body.error.message, "string");
  });
});

Deno.test("POST /v1/dev/token answers 404 without DEV_MODE", async () => {
  await withService(async (service) => {
    const response = await service.request("/v1/dev/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    assert.equal(response.status, 404);
    assert.equal((await response.json()).error.code, "not_found");
  });
});

Deno.test("POST /v1/dev/token in DEV_MODE makes a token that submits jobs", async (t) => {
  await withService(async (service) => {
    await t.step("for a chosen subject", async () => {
      const response = await service.request("/v1/dev/token", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sub: "dev-alice" }),
      });
      assert.equal(response.status, 200);
      const { token } = await response.json();
      assert.equal(typeof token, "string");
      const { response: submitted, body } = await submitJob(service, token);
      assert.equal(submitted.status, 202);
      const job = await waitForStatus(service, token, body.id, ["succeeded"]);
      assert.equal(job.status, "succeeded");
      const bob = await service.request(`/v1/jobs/${body.id}`, {
        headers: bearer(await devToken(service, "dev-bob")),
      });
      assert.equal(bob.status, 404);
      await bob.body?.cancel();
    });
    await t.step("with an empty body", async () => {
      const response = await service.request("/v1/dev/token", { method: "POST" });
      assert.equal(response.status, 200);
      assert.equal(typeof (await response.json()).token, "string");
    });
    await t.step("but not one signed with the test secret", async () => {
      const response = await service.request("/v1/jobs/x", {
        headers: bearer(await service.token("alice")),
      });
      assert.equal(response.status, 401);
      await response.body?.cancel();
    });
  }, { DEV_MODE: "1", JWT_SECRET: "" });
});

async function devToken(service: TestService, sub: string): Promise<string> {
  const response = await service.request("/v1/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sub }),
  });
  return (await response.json()).token;
}

Deno.test("DEV_MODE with a configured JWT key never signs dev tokens", async (t) => {
  const { publicKey } = await generateKeyPair("ES256");
  const keys: [string, Record<string, string>][] = [
    ["JWT_SECRET", {}],
    ["JWT_PUBLIC_KEY", { JWT_SECRET: "", JWT_PUBLIC_KEY: await exportSPKI(publicKey) }],
    ["JWT_JWKS_URL", { JWT_SECRET: "", JWT_JWKS_URL: "http://127.0.0.1:9/jwks.json" }],
  ];
  for (const [name, env] of keys) {
    await t.step(name, async () => {
      const records: LogRecord[] = [];
      await configure({
        reset: true,
        sinks: { memory: (record: LogRecord) => void records.push(record) },
        loggers: [{ category: ["imagejobs"], lowestLevel: "warning", sinks: ["memory"] }],
      });
      try {
        await withService(async (service) => {
          assert.equal(service.runtime.devToken, null);
          assert.equal(service.runtime.deps.auth.sign, undefined);
          const response = await service.request("/v1/dev/token", {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ sub: "anyone" }),
          });
          assert.equal(response.status, 404);
          const unknown = await service.request("/v1/no-such-route", { method: "POST" });
          assert.deepEqual(await response.json(), await unknown.json());
        }, { DEV_MODE: "1", ...env });
        const said = records.map((record) => record.message.join(""));
        assert.ok(said.some((line) => /dev tokens are off/.test(line)), said.join("\n"));
      } finally {
        await reset();
      }
    });
  }
});
