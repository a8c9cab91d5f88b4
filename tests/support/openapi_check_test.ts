/** The OpenAPI checker itself: it finds operations, and refuses undocumented answers and bad bodies. */
import assert from "node:assert/strict";
import { checkedFetch, checkedRequests, documentOf, OpenApiChecker } from "./openapi_check.ts";

const document = {
  openapi: "3.1.0",
  info: { title: "t", version: "1" },
  servers: [{ url: "https://example.test/api" }],
  paths: {
    "/jobs/{id}": {
      get: {
        responses: {
          "200": {
            description: "a job",
            content: { "application/json": { schema: { $ref: "#/components/schemas/Job" } } },
          },
          "404": { $ref: "#/components/responses/Error" },
          "5XX": { $ref: "#/components/responses/Error" },
        },
      },
    },
    "/jobs/{id}/events": {
      get: { responses: { "200": { description: "SSE", content: { "text/event-stream": {} } } } },
    },
  },
  components: {
    schemas: {
      Job: {
        type: "object",
        required: ["id", "created_at"],
        properties: {
          id: { type: "string", pattern: "^[\\w.:-]{1,128}$" },
          created_at: { type: "string", format: "date-time" },
          tags: { type: "array", prefixItems: [{ const: "first" }] },
        },
        additionalProperties: false,
      },
    },
    responses: {
      Error: {
        description: "error",
        content: {
          "application/json": {
            schema: {
              type: "object",
              required: ["error"],
              properties: { error: { type: "object", required: ["code", "message"] } },
            },
          },
        },
      },
    },
  },
};

const job = { id: "job-1", created_at: "2026-11-24T12:00:00.000Z" };
const json = (body: unknown, status = 200) => Response.json(body, { status });

Deno.test("the checker finds operations by path template, behind the server's path prefix", () => {
  const checker = new OpenApiChecker(document);
  assert.equal(checker.find("GET", "/api/jobs/abc")?.template, "/jobs/{id}");
  assert.equal(
    checker.find("GET", "http://h/api/jobs/abc/events?x=1")?.template,
    "/jobs/{id}/events",
  );
  assert.equal(checker.find("HEAD", "/api/jobs/abc")?.method, "get");
  assert.equal(checker.find("DELETE", "/api/jobs/abc")?.operation, null);
  assert.equal(checker.find("GET", "/api/other"), null);
});

Deno.test("the checker accepts answers that match the document", async () => {
  const checker = new OpenApiChecker(document);
  assert.deepEqual(await checker.checkResponse("GET", "/api/jobs/a", json(job)), []);
  const error = { error: { code: "not_found", message: "no" } };
  assert.deepEqual(await checker.checkResponse("GET", "/api/jobs/a", json(error, 404)), []);
  assert.deepEqual(await checker.checkResponse("GET", "/api/jobs/a", json(error, 503)), []);
  const sse = new Response("data: x\n\n", { headers: { "Content-Type": "text/event-stream" } });
  assert.deepEqual(await checker.checkResponse("GET", "/api/jobs/a/events", sse), []);
  assert.deepEqual(await checker.checkResponse("GET", "/api/nowhere", json({}, 418)), []);
});

Deno.test("the checker refuses undocumented statuses, content types and bodies off their schema", async () => {
  const checker = new OpenApiChecker(document);
  const problems = (response: Response, path = "/api/jobs/a") =>
    checker.checkResponse("GET", path, response);
  assert.match((await problems(json(job, 401))).join(), /status 401 is not documented/);
  const text = new Response("hi", { headers: { "Content-Type": "text/plain" } });
  assert.match((await problems(text)).join(), /Content-Type text\/plain is not documented/);
  assert.match((await problems(json({ id: "job-1" }))).join(), /created_at/);
  assert.match((await problems(json({ ...job, created_at: "yesterday" }))).join(), /date-time/);
  assert.match((await problems(json({ ...job, id: "a b" }))).join(), /pattern/);
  assert.match((await problems(json({ ...job, extra: 1 }))).join(), /additional/);
  assert.match((await problems(json({ ...job, tags: ["second"] }))).join(), /constant/);
  assert.match((await problems(json({ error: { code: "x" } }, 500))).join(), /message/);
  const broken = new Response("{", { headers: { "Content-Type": "application/json" } });
  assert.match((await problems(broken)).join(), /not JSON/);
});

Deno.test("a checked app throws on a response that breaks the document, naming the exchange", async () => {
  const served = new Map<string, Response>([["/openapi.json", json(document)]]);
  const app = { request: (path: string) => served.get(path) ?? json(job, 401) };
  const checker = documentOf(app);
  const checked = checkedRequests(app, checker);
  await assert.rejects(
    Promise.resolve(checked.request("/api/jobs/a")),
    /Cannot match the OpenAPI document: GET \/api\/jobs\/a answered 401: status 401 is not documented/,
  );
  const violations: string[] = [];
  const fetch = checkedFetch(() => json({ id: 1 }), checker, violations);
  await fetch(new Request("http://h/api/jobs/b", { method: "GET" }));
  assert.equal(violations.length, 1);
  assert.match(violations[0], /GET \/api\/jobs\/b answered 200: .*body\/id must be string/);
});
