/** Tests of the operations routes: health, readiness, metrics, the generated document, the page. */
import assert from "node:assert/strict";
import { createApp } from "../../routes/app.ts";
import { bearer, submitJob, waitForStatus, withService } from "../support/app.ts";

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

Deno.test("GET /openapi.json is an OpenAPI 3.1 document generated from the routes", async (t) => {
  await withService(async (service) => {
    const response = await service.request("/openapi.json");
    assert.equal(response.status, 200);
    const document = await response.json();
    assert.match(document.openapi, /^3\.1\./);
    assert.equal(typeof document.info.title, "string");
    assert.deepEqual(document.servers, [{ url: "/", description: "This service" }]);
    type Operation = { operationId: string; tags?: string[] };
    const paths = document.paths as Record<string, Record<string, Operation>>;
    const operations = Object.entries(paths).flatMap(([path, item]) =>
      Object.entries(item).map(([method, operation]) => ({ path, method, operation }))
    );
    await t.step("with an operationId and tags for every operation", () => {
      const ids = operations.map((o) =>
        `${o.method.toUpperCase()} ${o.path} ${o.operation.operationId}`
      );
      assert.deepEqual(ids.sort(), [
        "DELETE /v1/jobs/{id} cancelJob",
        "GET /healthz getHealth",
        "GET /metrics getMetrics",
        "GET /openapi.json getOpenApiDocument",
        "GET /readyz getReadiness",
        "GET /v1/events streamAllEvents",
        "GET /v1/jobs listJobs",
        "GET /v1/jobs/{id} getJob",
        "GET /v1/jobs/{id}/events streamJobEvents",
        "GET /v1/jobs/{id}/image getJobImage",
        "GET /v1/jobs/{id}/images/{index} getJobImageAt",
        "GET /v1/usage getUsage",
        "GET /v1/ws openJobSocket",
        "POST /v1/images submitJob",
      ]);
      for (const { operation } of operations) {
        assert.ok(operation.tags?.length, operation.operationId);
      }
    });
    await t.step("with a bearer scheme and a ticket scheme", () => {
      const schemes = document.components.securitySchemes;
      assert.deepEqual(schemes.bearer, { ...schemes.bearer, type: "http", scheme: "bearer" });
      assert.equal(schemes.bearer.bearerFormat, "JWT");
      assert.deepEqual(schemes.ticket, { ...schemes.ticket, type: "apiKey", in: "query" });
      assert.equal(schemes.ticket.name, "ticket");
      const events = document.paths["/v1/jobs/{id}/events"].get;
      assert.deepEqual(events.security, [{ bearer: [] }, { ticket: [] }]);
    });
    await t.step("with links from the submit answer to the job's routes", () => {
      const links = document.paths["/v1/images"].post.responses["202"].links;
      for (const id of ["getJob", "cancelJob", "streamJobEvents"]) {
        assert.equal(links[id].operationId, id);
        assert.deepEqual(links[id].parameters, { id: "$response.body#/id" });
      }
    });
    await t.step("with real success schemas, the prompt's limits and the error body", () => {
      const schemas = document.components.schemas;
      assert.deepEqual(schemas.SubmitAnswer.required, ["id", "status", "created_at", "urls"]);
      assert.equal(schemas.Job.oneOf.length, 5);
      const prompt = schemas.SubmitRequest.properties.prompt;
      assert.deepEqual([prompt.minLength, prompt.maxLength], [1, 4000]);
      assert.deepEqual(schemas.SubmitRequest.required, ["prompt"]);
      assert.deepEqual(schemas.Error.required, ["error"]);
      const failed = document.paths["/v1/images"].post.responses["422"];
      assert.equal(failed.content["application/json"].schema.$ref, "#/components/schemas/Error");
      const resume = document.paths["/v1/jobs/{id}/events"].get.parameters
        .find((p: { name: string }) => p.name === "last_event_id");
      assert.ok(new RegExp(resume.schema.pattern).test("1700000000000-0"));
      assert.ok(!new RegExp(resume.schema.pattern).test("x"));
    });
  });
});

Deno.test("a worker-only process documents only the operations routes", async () => {
  await withService(async (service) => {
    const config = { ...service.runtime.deps.config, ROLE: "worker" as const };
    // Its own document, not the full one the test helpers check responses against.
    const app = createApp({ ...service.runtime.deps, config });
    const document = await (await app.request("/openapi.json")).json();
    assert.deepEqual(Object.keys(document.paths).sort(), [
      "/healthz",
      "/metrics",
      "/openapi.json",
      "/readyz",
    ]);
    const submit = await app.request("/v1/images", { method: "POST", body: "{}" });
    assert.equal(submit.status, 404);
    await submit.body?.cancel();
  });
});

Deno.test("a wrong method on a known path answers 405 with Allow, an unknown path 404", async (t) => {
  await withService(async (service) => {
    const cases: [string, string, string][] = [
      ["PUT", "/v1/images", "POST"],
      ["GET", "/v1/images", "POST"],
      ["POST", "/v1/jobs/some-job", "DELETE, GET, HEAD"],
      ["PATCH", "/v1/jobs/some-job/events", "GET, HEAD"],
      ["POST", "/v1/ws", "GET, HEAD"],
      ["DELETE", "/healthz", "GET, HEAD"],
      ["POST", "/openapi.json", "GET, HEAD"],
    ];
    for (const [method, path, allow] of cases) {
      await t.step(`${method} ${path}`, async () => {
        const response = await service.request(path, { method });
        assert.equal(response.status, 405);
        assert.equal(response.headers.get("Allow"), allow);
        const body = await response.json();
        assert.deepEqual(Object.keys(body), ["error"]);
        assert.equal(body.error.code, "invalid_request");
        assert.match(body.error.message, /^Cannot /);
      });
    }
    await t.step("but an unknown path stays 404 whatever the method", async () => {
      for (const method of ["GET", "POST", "DELETE"]) {
        const response = await service.request("/v1/jobs/a/b/c", { method });
        assert.equal(response.status, 404);
        assert.equal((await response.json()).error.code, "not_found");
      }
    });
  });
});

Deno.test("GET / serves an HTML page with a Content-Security-Policy", async () => {
  await withService(async (service) => {
    const response = await service.request("/");
    assert.equal(response.status, 200);
    assert.match(response.headers.get("Content-Type") ?? "", /^text\/html/);
    const csp = response.headers.get("Content-Security-Policy") ?? "";
    assert.match(csp, /default-src 'none'/);
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
