/** Helpers of the fault tests: the environment, a submit, and a job's events read from Redis. */
import assert from "node:assert/strict";
import { TEST_SECRET } from "../support/app.ts";
import type { FakeXai } from "../support/fake_xai.ts";
import { redisCommand, type RedisServer } from "../support/redis_server.ts";
import type { Via } from "../support/transports.ts";

/** The statuses a job ends in. */
export const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

/** The service's environment on this Redis and fake xAI, with a fresh key prefix and fast backoff. */
export async function env(
  via: Via,
  redis: RedisServer,
  xai: FakeXai,
  extra: Record<string, string> = {},
) {
  return {
    ...(await via.redisEnv(redis)),
    REDIS_PREFIX: `f${crypto.randomUUID().slice(0, 6)}:`,
    JWT_SECRET: TEST_SECRET,
    XAI_API_KEY: "xai-test-key",
    GROK_API: xai.url,
    IMAGE_HOSTS: xai.host,
    RATE_LIMIT_PER_MINUTE: "0",
    JOB_BACKOFF_BASE_MS: "20",
    JOB_BACKOFF_MAX_MS: "100",
    ...extra,
  };
}

/** Submits a job with this id through `call` and asserts that it was accepted. */
export async function submit(
  call: (path: string, init: RequestInit) => Promise<Response>,
  token: string,
  id: string,
) {
  const res = await call("/v1/images", {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: `prompt of ${id}`, id }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return await res.json();
}

/** The job's event types straight from Redis. */
export async function eventTypes(
  redis: RedisServer,
  prefix: string,
  id: string,
): Promise<string[]> {
  const flat = await redisCommand(redis.port, ["HGETALL", `${prefix}job:${id}`]) as string[];
  const fields = new Map<string, string>();
  for (let i = 0; i < flat.length; i += 2) fields.set(flat[i], flat[i + 1]);
  const out: string[] = [];
  for (let seq = 1; seq <= Number(fields.get("seq") ?? 0); seq++) {
    out.push(JSON.parse(fields.get(`e${seq}`)!).type);
  }
  return out;
}

/** Polls `fn` until it returns something other than undefined, for up to `ms`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const value = await fn();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`Cannot see ${what} in ${ms} ms`);
}

/** Waits until the job has a terminal event, and returns its event types. */
export async function terminal(redis: RedisServer, prefix: string, id: string) {
  return await waitFor(`job ${id} end`, async () => {
    const types = await eventTypes(redis, prefix, id);
    return types.some((t) => TERMINAL.has(t)) ? types : undefined;
  });
}
