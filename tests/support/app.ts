/** Builds the real service in memory (real broker, real auth) with a chosen provider, for tests. */
import { getLogger } from "@logtape/logtape";
import { SignJWT } from "jose";
import { type AppDeps, createApp } from "../../routes/app.ts";
import { loadConfig } from "../../lib/config.ts";
import type { ImageProvider } from "../../lib/provider/grok.ts";
import type { Broker } from "../../lib/queue/types.ts";
import { type Runtime, startRuntime } from "../../main.ts";
import { createMetrics } from "../../lib/metrics.ts";
import { checkedFetch, checkedRequests, documentOf, type OpenApiChecker } from "./openapi_check.ts";

/** A test HMAC secret (tests only). */
export const TEST_SECRET = "test-secret-0123456789-abcdefghijklmnop";

/** A running in-memory service and helpers to call it. */
export interface TestService {
  runtime: Runtime;
  /** The app's OpenAPI document, which every response the helpers receive is checked against. */
  openapi: () => Promise<OpenApiChecker>;
  /** Calls the app in memory; throws when the response breaks the OpenAPI document. */
  request(path: string, init?: RequestInit): Promise<Response>;
  /** Signs an HS256 token for `sub` with the test secret. */
  token(
    sub: string,
    options?: { expiresIn?: string | number; claims?: Record<string, unknown> },
  ): Promise<string>;
  close(): Promise<void>;
}

/** Signs an HS256 test token. */
export async function signToken(
  sub: string | undefined,
  { secret = TEST_SECRET, expiresIn = "1h", claims = {} }: {
    secret?: string;
    expiresIn?: string | number;
    claims?: Record<string, unknown>;
  } = {},
): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt();
  if (sub !== undefined) jwt.setSubject(sub);
  if (expiresIn !== "none") jwt.setExpirationTime(expiresIn);
  return await jwt.sign(new TextEncoder().encode(secret));
}

/** Starts the service with the given environment on top of test defaults (memory broker, HS secret). */
export async function startTestService(
  { env = {}, provider, workerOptions }: {
    env?: Record<string, string>;
    provider?: ImageProvider;
    workerOptions?: { backoffBaseMs?: number; backoffMaxMs?: number; blockMs?: number };
  } = {},
): Promise<TestService> {
  const config = loadConfig({ JWT_SECRET: TEST_SECRET, RATE_LIMIT_PER_MINUTE: "1000", ...env });
  const runtime = await startRuntime(config, getLogger(["imagejobs", "test"]), {
    provider,
    workerOptions: { backoffBaseMs: 10, backoffMaxMs: 50, ...workerOptions },
  });
  // The document comes from a twin app on the same parts, so loading it touches no metric of the real one.
  const openapi = documentOf({
    request: (path) => createApp({ ...runtime.deps, metrics: createMetrics() }).request(path),
  });
  const app = checkedRequests(runtime.app, openapi);
  return {
    runtime,
    openapi,
    request: (path, init) => Promise.resolve(app.request(path, init)),
    token: (sub, options) => signToken(sub, options),
    close: () => runtime.close({ drainMs: 1_000 }),
  };
}

/** Reads an SSE response body until it ends, returning the parsed events. */
export async function readSse(
  response: Response,
  { limit = 100 }: { limit?: number } = {},
): Promise<{ id?: string; event?: string; data: string; comments: string[] }[]> {
  const text = response.body!.pipeThrough(new TextDecoderStream());
  const events: { id?: string; event?: string; data: string; comments: string[] }[] = [];
  let buffer = "";
  let current: { id?: string; event?: string; data: string; comments: string[] } = {
    data: "",
    comments: [],
  };
  for await (const chunk of text) {
    buffer += chunk;
    let index;
    while ((index = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, index).replace(/\r$/, "");
      buffer = buffer.slice(index + 1);
      if (line === "") {
        if (current.data || current.event) events.push(current);
        current = { data: "", comments: [] };
        if (events.length >= limit) return events;
      } else if (line.startsWith(":")) current.comments.push(line.slice(1).trim());
      else {
        const [field, ...rest] = line.split(":");
        const value = rest.join(":").replace(/^ /, "");
        if (field === "id") current.id = value;
        else if (field === "event") current.event = value;
        else if (field === "data") current.data += value;
      }
    }
  }
  return events;
}

/** A provider that answers after `latencyMs` (and after `gate`, when given) with a fixed PNG, counting
 * calls, calls per prompt, and calls whose signal aborted them. */
export function countingProvider({ latencyMs = 0, fail, gate, holds = () => true }: {
  latencyMs?: number;
  fail?: (call: number) => Error | undefined;
  /** Calls wait for this promise (or their abort) before answering. */
  gate?: Promise<void>;
  /** Which prompts the gate holds (all by default). */
  holds?: (prompt: string) => boolean;
} = {}): ImageProvider & { calls: number; aborted: number; byPrompt: Map<string, number> } {
  const png =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC";
  const provider = {
    name: "counting",
    calls: 0,
    aborted: 0,
    byPrompt: new Map<string, number>(),
    async generate(request: { prompt?: string }, options: { signal?: AbortSignal } = {}) {
      provider.calls++;
      const prompt = String(request?.prompt);
      provider.byPrompt.set(prompt, (provider.byPrompt.get(prompt) ?? 0) + 1);
      const error = fail?.(provider.calls);
      const held = gate !== undefined && holds(prompt);
      if (latencyMs > 0 || held) {
        await new Promise<void>((resolve, reject) => {
          const timer = latencyMs > 0 ? setTimeout(resolve, latencyMs) : undefined;
          if (held && latencyMs === 0) void gate.then(resolve);
          options.signal?.addEventListener("abort", () => {
            clearTimeout(timer);
            provider.aborted++;
            reject(options.signal!.reason ?? new DOMException("Aborted", "AbortError"));
          }, { once: true });
        });
      }
      if (error) throw error;
      return { base64: png, mimeType: "image/png" as const, revisedPrompt: "revised" };
    },
  };
  return provider;
}

/** Waits `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Headers with a bearer token and a JSON content type. */
export function bearer(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...extra };
}

/** Submits a job as `token`'s owner and returns the response and its parsed JSON body. */
export async function submitJob(
  service: TestService,
  token: string,
  body: Record<string, unknown> = { prompt: "a red fox in snow" },
  headers: Record<string, string> = {},
  // deno-lint-ignore no-explicit-any
): Promise<{ response: Response; body: any }> {
  const response = await service.request("/v1/images", {
    method: "POST",
    headers: bearer(token, headers),
    body: JSON.stringify(body),
  });
  return { response, body: await response.json() };
}

/** Polls `GET /v1/jobs/:id` until its status is one of `statuses`, returning the job document. */
export async function waitForStatus(
  service: TestService,
  token: string,
  id: string,
  statuses: string[],
  { timeoutMs = 10_000 }: { timeoutMs?: number } = {},
  // deno-lint-ignore no-explicit-any
): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await service.request(`/v1/jobs/${encodeURIComponent(id)}`, {
      headers: bearer(token),
    });
    const body = await response.json();
    if (response.status !== 200) {
      throw new Error(`Cannot poll job ${id}: status ${response.status}`);
    }
    if (statuses.includes(body.status)) return body;
    if (Date.now() > deadline) {
      throw new Error(`Cannot see job ${id} reach ${statuses.join("/")}: it is ${body.status}`);
    }
    await delay(20);
  }
}

/** Serves the app (or `app`, built from the service's parts) on a free 127.0.0.1 port (for WebSocket
 * tests); `close()` is idempotent and throws when a response broke the OpenAPI document. */
export function serveTestService(
  service: TestService,
  app: { fetch: Runtime["app"]["fetch"] } = service.runtime.app,
): { origin: string; wsOrigin: string; close(): Promise<void> } {
  const violations: string[] = [];
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    checkedFetch((request, info) => app.fetch(request, info), service.openapi, violations),
  );
  const { port } = server.addr;
  let closing: Promise<void> | null = null;
  return {
    origin: `http://127.0.0.1:${port}`,
    wsOrigin: `ws://127.0.0.1:${port}`,
    close: () => (closing ??= server.shutdown().then(() => {
      if (violations.length) throw new Error(violations.join("\n"));
    })),
  };
}

/** Runs `fn` against a fresh in-memory service (instant counting provider unless options say otherwise). */
export async function withService(
  fn: (service: TestService) => Promise<void>,
  options: Parameters<typeof startTestService>[0] = {},
): Promise<void> {
  const service = await startTestService({ provider: countingProvider(), ...options });
  try {
    await fn(service);
  } finally {
    await service.close();
  }
}

/** A broker whose jobs can be made to vanish (history and get answer null), as after a TTL or a flush. */
export function vanishingBroker(broker: Broker): { broker: Broker; forget(id: string): void } {
  const gone = new Set<string>();
  const wrapped = new Proxy(broker, {
    get(target, name, receiver) {
      if (name === "history" || name === "get") {
        return (id: string, ...rest: unknown[]) =>
          // deno-lint-ignore no-explicit-any
          gone.has(id) ? Promise.resolve(null) : (target as any)[name](id, ...rest);
      }
      const value = Reflect.get(target, name, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { broker: wrapped, forget: (id) => void gone.add(id) };
}

/** The service's app rebuilt with other parts (a relay, an auth, a broker), sharing the rest. */
export function appWith(service: TestService, parts: Partial<AppDeps>): Runtime["app"] {
  return checkedRequests(createApp({ ...service.runtime.deps, ...parts }), service.openapi);
}

/** Polls `check` every 10 ms until it is true, failing with `what` after `ms`. */
export async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Cannot see ${what} within ${ms} ms`);
    await delay(10);
  }
}
