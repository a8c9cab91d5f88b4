/** End to end: webhooks from the service as a subprocess, on the memory broker and on a real Redis. */
import assert from "node:assert/strict";
import { Webhook } from "standardwebhooks";
import { signToken, TEST_SECRET } from "../support/app.ts";
import { type FakeXai, startFakeXai } from "../support/fake_xai.ts";
import { startRedis } from "../support/redis_server.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { transportTest } from "../support/transports.ts";
import { type Received, SECRET, startReceiver } from "../lib/webhooks/helpers.ts";
import { submit } from "./e2e_helpers.ts";

/** Long enough for a loaded machine to run a job; it turns a hang into a failure and times nothing. */
const WITHIN_MS = 20_000;

function webhookEnv(xai: FakeXai, receiverPort: number, extra: Record<string, string> = {}) {
  return {
    XAI_API_KEY: "xai-test-key",
    GROK_API: xai.url,
    IMAGE_HOSTS: xai.host,
    WEBHOOK_SECRET: SECRET,
    WEBHOOK_HOSTS: `127.0.0.1:${receiverPort}`,
    ...extra,
  };
}

function verified(request: Received) {
  return new Webhook(SECRET).verify(request.body, Object.fromEntries(request.headers)) as {
    id: string;
    type: string;
    success: boolean;
    data?: { image: string; mime_type: string; images: { mime_type: string; url: string }[] };
    error?: string;
    error_code?: string;
    usage?: { images: number; cost_usd: number };
  };
}

/** Waits until the service's /metrics counts `n` deliveries with this outcome (polled). */
async function deliveries(service: ServiceProcess, outcome: string, n: number): Promise<void> {
  const line = `webhook_deliveries_total{outcome="${outcome}"} ${n}`;
  const deadline = Date.now() + WITHIN_MS;
  while (Date.now() < deadline) {
    const text = await (await fetch(`${service.url}/metrics`)).text();
    if (text.split("\n").includes(line)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`Cannot see ${line} in /metrics`);
}

/** Submits a job with a webhook and checks the one verified delivery of its terminal event. */
async function oneVerifiedDelivery(service: ServiceProcess, token: string, receiver: {
  url(): string;
  requests: { next(what: string, ms: number): Promise<Received>; all: Received[] };
}, xai: FakeXai) {
  const { status, body } = await submit(service.url, token, {
    prompt: "a red fox in snow",
    webhook: receiver.url(),
    n: 2,
  });
  assert.equal(status, 202, JSON.stringify(body));
  const request = await receiver.requests.next("the webhook", WITHIN_MS);
  const notification = verified(request);
  assert.equal(notification.id, body.id);
  assert.equal(notification.type, "succeeded");
  assert.equal(notification.success, true);
  assert.match(notification.data!.image, /^data:image\/png;base64,iVBOR/);
  // What the provider charged rides along (the placeholder's images are free, the fake's 2¢ each).
  assert.equal(notification.usage?.images, 2);
  assert.ok([0, 0.04].includes(notification.usage!.cost_usd), JSON.stringify(notification.usage));
  // Every image is listed, each link fetchable by its ticket alone.
  const links = notification.data!.images;
  assert.deepEqual(links.map((link) => link.mime_type), ["image/png", "image/jpeg"]);
  for (const link of links) {
    const image = await fetch(`${service.url}${link.url}`);
    assert.equal(image.status, 200);
    assert.equal(image.headers.get("content-type"), link.mime_type);
    await image.body?.cancel();
  }
  assert.match(request.headers.get("webhook-id")!, new RegExp(`^msg_${body.id}_succeeded_`));
  await deliveries(service, "delivered", 1);
  assert.equal(receiver.requests.all.length, 1); // done before counted: nothing else is pending
  // A refusal's delivery says so, with its code.
  xai.inject({ refuse: true });
  const refused = await submit(service.url, token, { prompt: "refused", webhook: receiver.url() });
  assert.equal(refused.status, 202);
  const failed = verified(await receiver.requests.next("the refusal's webhook", WITHIN_MS));
  assert.equal(failed.type, "failed");
  assert.equal(failed.error, "The request was refused by the image provider's content policy");
  assert.equal(failed.error_code, "content_policy");
}

Deno.test({
  name: "a DEV_MODE service on the memory broker delivers one signed webhook per job",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const xai = await startFakeXai();
    const receiver = startReceiver();
    const service = await startService({ DEV_MODE: "1", ...webhookEnv(xai, receiver.port) });
    try {
      const res = await fetch(`${service.url}/v1/dev/token`, {
        method: "POST",
        body: JSON.stringify({ sub: "alice" }),
      });
      const { token } = await res.json();
      await oneVerifiedDelivery(service, token, receiver, xai);
    } finally {
      assert.equal(await service.stop("SIGTERM"), 0, service.output());
      await receiver.close();
      await xai.close();
    }
  },
});

transportTest("a service on Redis delivers one signed webhook per job", async (_t, via) => {
  const redis = await startRedis();
  const xai = await startFakeXai();
  const receiver = startReceiver();
  try {
    const service = await startService({
      ...(await via.redisEnv(redis)),
      REDIS_PREFIX: "wh-e2e:",
      JWT_SECRET: TEST_SECRET,
      ...webhookEnv(xai, receiver.port),
    });
    try {
      await oneVerifiedDelivery(service, await signToken("alice"), receiver, xai);
    } finally {
      assert.equal(await service.stop("SIGTERM"), 0, service.output());
    }
  } finally {
    await receiver.close();
    await xai.close();
    await redis.stop();
  }
});

Deno.test({
  name: "a pending webhook delivery on Redis survives a restart of the service",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const xai = await startFakeXai();
    let up = false;
    const receiver = startReceiver(() => new Response(null, { status: up ? 200 : 503 }));
    const env = {
      REDIS_URL: redis.url,
      REDIS_PREFIX: "wh-restart:",
      JWT_SECRET: TEST_SECRET,
      ...webhookEnv(xai, receiver.port),
    };
    try {
      const first = await startService(env);
      let id: string;
      try {
        const { status, body } = await submit(first.url, await signToken("alice"), {
          prompt: "a red fox in snow",
          webhook: receiver.url(),
        });
        assert.equal(status, 202);
        id = body.id;
        const refused = await receiver.requests.next("the first attempt", WITHIN_MS);
        assert.equal(verified(refused).id, id);
      } finally {
        assert.equal(await first.stop("SIGTERM"), 0, first.output());
      }
      up = true;
      const attempts = receiver.requests.all.length; // 503s while the first process ran
      const second = await startService(env);
      try {
        let request: Received;
        do request = await receiver.requests.next(
          "the delivery after the restart",
          WITHIN_MS,
        ); while (receiver.requests.all.indexOf(request) < attempts);
        const notification = verified(request);
        assert.deepEqual([notification.id, notification.type], [id, "succeeded"]);
        const ids = new Set(receiver.requests.all.map((r) => r.headers.get("webhook-id")));
        assert.equal(ids.size, 1, "every attempt carries the same webhook-id");
        await deliveries(second, "delivered", 1);
      } finally {
        assert.equal(await second.stop("SIGTERM"), 0, second.output());
      }
    } finally {
      await receiver.close();
      await xai.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name: "a ROLE=api process that accepts a webhook delivers it, with no worker running",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const xai = await startFakeXai();
    const receiver = startReceiver();
    try {
      const api = await startService({
        REDIS_URL: redis.url,
        REDIS_PREFIX: "wh-api:",
        JWT_SECRET: TEST_SECRET,
        ROLE: "api",
        ...webhookEnv(xai, receiver.port),
      });
      try {
        const { status, body } = await submit(api.url, await signToken("alice"), {
          prompt: "a red fox in snow",
          webhook: receiver.url(),
          webhook_events: ["queued"],
        });
        assert.equal(status, 202, JSON.stringify(body));
        // Only the API process runs: the `queued` delivery can only have come from it.
        const notification = verified(
          await receiver.requests.next("the queued webhook", WITHIN_MS),
        );
        assert.deepEqual([notification.id, notification.type], [body.id, "queued"]);
        await deliveries(api, "delivered", 1);
      } finally {
        assert.equal(await api.stop("SIGTERM"), 0, api.output());
      }
    } finally {
      await receiver.close();
      await xai.close();
      await redis.stop();
    }
  },
});
