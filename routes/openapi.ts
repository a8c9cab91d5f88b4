/** The OpenAPI 3.1 document of the public contract, with request schemas generated from the zod ones. */
import { z } from "zod";
import { devTokenBody, submitBody } from "./schemas.ts";

const error = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      properties: { code: { type: "string" }, message: { type: "string" } },
    },
  },
};

function errors(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((status) => [
      String(status),
      { description: "Error", content: { "application/json": { schema: error } } },
    ]),
  );
}

const json = (schema: unknown) => ({ content: { "application/json": { schema } } });
const idParam = { name: "id", in: "path", required: true, schema: { type: "string" } };
const bearer = [{ bearer: [] }];

/** Builds the OpenAPI document served at `/openapi.json`. */
export function openApiDocument(): Record<string, unknown> {
  const submit = z.toJSONSchema(submitBody, { io: "input" });
  const devToken = z.toJSONSchema(devTokenBody, { io: "input" });
  return {
    openapi: "3.1.0",
    info: {
      title: "Image job service",
      version: "1.0.0",
      description: "Queue image jobs for xAI's Grok image model and follow them live.",
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
    },
    paths: {
      "/v1/images": {
        post: {
          summary: "Submit an image job",
          security: bearer,
          parameters: [{ name: "Idempotency-Key", in: "header", schema: { type: "string" } }],
          requestBody: { required: true, ...json(submit) },
          responses: {
            "202": { description: "Queued; Location names the job", ...json({ type: "object" }) },
            "200": { description: "The job that already had this id", ...json({ type: "object" }) },
            ...errors(400, 401, 409, 413, 422, 429, 503),
          },
        },
      },
      "/v1/jobs/{id}": {
        get: {
          summary: "Job status and result",
          security: bearer,
          parameters: [idParam],
          responses: {
            "200": { description: "The job", ...json({ type: "object" }) },
            ...errors(401, 404),
          },
        },
        delete: {
          summary: "Cancel a job",
          security: bearer,
          parameters: [idParam],
          responses: { "202": { description: "Canceled" }, ...errors(401, 404, 409) },
        },
      },
      "/v1/jobs/{id}/events": {
        get: {
          summary:
            "Server-Sent Events of one job (Bearer or ?ticket=), resumable with Last-Event-ID",
          parameters: [
            idParam,
            { name: "ticket", in: "query", schema: { type: "string" } },
            { name: "last_event_id", in: "query", schema: { type: "string" } },
          ],
          responses: { "200": { description: "text/event-stream" }, ...errors(400, 401, 404) },
        },
      },
      "/v1/ws": {
        get: {
          summary:
            "WebSocket: ?ticket= or a first {type: auth} message, then {type: subscribe, id}",
          responses: { "101": { description: "Switching protocols" }, ...errors(400, 401, 403) },
        },
      },
      "/v1/dev/token": {
        post: {
          summary: "Development token (DEV_MODE=1 only)",
          requestBody: json(devToken),
          responses: {
            "200": { description: "A token", ...json({ type: "object" }) },
            ...errors(404),
          },
        },
      },
      "/healthz": {
        get: { summary: "Process alive", responses: { "200": { description: "OK" } } },
      },
      "/readyz": {
        get: {
          summary: "Broker reachable",
          responses: { "200": { description: "Ready" }, ...errors(503) },
        },
      },
      "/metrics": {
        get: { summary: "Prometheus metrics", responses: { "200": { description: "Text" } } },
      },
    },
  };
}
