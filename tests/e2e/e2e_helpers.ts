/** Helpers of the end-to-end tests on service subprocesses: environment, submit, polling. */
import { TEST_SECRET } from "../support/app.ts";
import type { RedisServer } from "../support/redis_server.ts";
import type { Via } from "../support/transports.ts";

/** The service's environment on this Redis (prefix `e2e:`) and fake xAI, with `extra` on top. */
export async function baseEnv(
  via: Via,
  redis: RedisServer,
  xai: { url: string; host: string },
  extra = {},
) {
  return {
    ...(await via.redisEnv(redis)),
    REDIS_PREFIX: "e2e:",
    JWT_SECRET: TEST_SECRET,
    XAI_API_KEY: "xai-test-key",
    // Unpaced unless the fake answers 429 (the pace has its own tests, provider_pace_test.ts).
    GROK_MAX_RPS: "0",
    GROK_API: xai.url,
    IMAGE_HOSTS: xai.host,
    JOB_LEASE_MS: "3000",
    ...extra,
  };
}

/** Posts a job to the service at `url` and returns its status, body and headers. */
export async function submit(url: string, token: string, body: Record<string, unknown>) {
  const res = await fetch(`${url}/v1/images`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

/** Polls the job until its status is one of `statuses`, for up to 20 s. */
export async function waitForStatus(url: string, token: string, id: string, statuses: string[]) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const res = await fetch(`${url}/v1/jobs/${id}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    const body = await res.json();
    if (res.ok && statuses.includes(body.status)) return body;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`Cannot see job ${id} reach ${statuses.join("/")}`);
}
