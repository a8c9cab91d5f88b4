/**
 * The image links of a success's notification: stored without a ticket, and given a current one by
 * every delivery (SSE, WebSocket, the owner's stream, webhooks), so that a replay long after the job
 * ended, or a webhook retried hours later, still links images the client can fetch.
 */
import assert from "node:assert/strict";
import { Client } from "../support/ws_client.ts";
import {
  bearer,
  countingProvider,
  readSse,
  serveTestService,
  startTestService,
  submitJob,
  waitForStatus,
} from "../support/app.ts";
import { SECRET, startReceiver } from "../lib/webhooks/helpers.ts";

/** The `exp` of a ticket (a JWT), in seconds. */
function expiry(url: string): number {
  const ticket = new URL(url, "http://x").searchParams.get("ticket")!;
  const payload = JSON.parse(new TextDecoder().decode(Uint8Array.fromBase64(
    ticket.split(".")[1],
    { alphabet: "base64url" },
  )));
  return payload.exp;
}

Deno.test({
  name: "a success's image links are stored bare and every delivery puts a current ticket on them",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const receiver = startReceiver();
    const service = await startTestService({
      provider: countingProvider(),
      env: { WEBHOOK_SECRET: SECRET, WEBHOOK_HOSTS: `127.0.0.1:${receiver.port}` },
    });
    const server = serveTestService(service);
    try {
      const token = await service.token("alice");
      const { body } = await submitJob(service, token, {
        prompt: "a fox",
        webhook: receiver.url(),
      });
      const id = body.id;
      await waitForStatus(service, token, id, ["succeeded"]);
      const stored = (await service.runtime.deps.broker.events(id)).at(-1)!.notification;
      assert.ok(stored.type === "succeeded");
      assert.deepEqual(stored.data.images, [{
        mime_type: "image/png",
        url: `/v1/jobs/${id}/images/0`,
      }]);
      /** Checks a delivered success: a ticket good for 15 minutes from now, that fetches the image. */
      const check = async (notification: { data: { images: { url: string }[] } }) => {
        const [link] = notification.data.images;
        assert.match(link.url, new RegExp(`^/v1/jobs/${id}/images/0\\?ticket=[\\w.-]+$`));
        assert.ok(expiry(link.url) >= Date.now() / 1000 + 14 * 60, "a current ticket");
        const image = await service.request(link.url); // no bearer: the ticket is enough
        assert.equal(image.status, 200);
        await image.body?.cancel();
      };
      await t.step("SSE replay", async () => {
        const events = await readSse(
          await service.request(`/v1/jobs/${id}/events`, { headers: bearer(token) }),
        );
        await check(JSON.parse(events.at(-1)!.data!));
      });
      await t.step("WebSocket subscribe", async () => {
        const client = new Client(`${server.wsOrigin}/v1/ws`);
        try {
          assert.equal(await client.opened, true);
          client.send({ type: "auth", token });
          client.send({ type: "subscribe", id });
          let message;
          do message = await client.next(); while (message.notification?.type !== "succeeded");
          await check(message.notification);
        } finally {
          client.socket.close();
        }
      });
      await t.step("webhook", async () => {
        const delivery = await receiver.requests.next("the success's webhook", 10_000);
        await check(JSON.parse(delivery.body));
      });
    } finally {
      await service.close();
      await server.close();
      await receiver.close();
    }
  },
});
