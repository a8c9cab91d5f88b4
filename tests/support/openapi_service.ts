/** A service that can reach every documented answer (dev tokens, small limits, held jobs). */
import assert from "node:assert/strict";
import type { Broker } from "../../lib/queue/types.ts";
import { countingProvider, startTestService, type TestService } from "./app.ts";

/** Routes that are not part of the API and may stay out of the document. */
export const NON_API = new Set([
  "/",
  "/favicon.ico",
  "/docs",
  "/docs/*",
  "/docs/{name}",
  "/static/{name}",
  "/openapi.json",
  "/metrics",
]);
/** Headers of a JSON request body. */
export const JSON_HEADERS = { "Content-Type": "application/json" };

/** A DEV_MODE service (dev tokens on), small limits so 429s are reachable, and held prompts. */
export async function withDevService(fn: (service: TestService) => Promise<void>): Promise<void> {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  const provider = countingProvider({ gate, holds: (prompt) => prompt.startsWith("hold") });
  const env = {
    DEV_MODE: "1",
    JWT_SECRET: "",
    RATE_LIMIT_PER_MINUTE: "2",
    MAX_STREAMS_PER_OWNER: "1",
  };
  const service = await startTestService({ env, provider });
  try {
    await fn(service);
  } finally {
    open();
    await service.close();
  }
}

/** A dev token for `sub`. */
export async function devToken(service: TestService, sub: string): Promise<string> {
  const response = await service.request("/v1/dev/token", {
    method: "POST",
    headers: JSON_HEADERS,
    body: JSON.stringify({ sub }),
  });
  assert.equal(response.status, 200);
  return (await response.json()).token;
}

/** Calls the app (whose helper checks the answer against the document) and asserts the status. */
export async function answers(
  service: { request(path: string, init?: RequestInit): Response | Promise<Response> },
  status: number,
  path: string,
  init: RequestInit = {},
): Promise<Response> {
  const response = await service.request(path, init);
  assert.equal(response.status, status, `${init.method ?? "GET"} ${path}`);
  return response;
}

/** A broker whose every call fails with `error`. */
export function brokenBroker(broker: Broker, error: Error): Broker {
  return new Proxy(broker, {
    get: (target, name) =>
      typeof Reflect.get(target, name) === "function"
        ? () => Promise.reject(error)
        : Reflect.get(target, name),
  });
}
