/**
 * A WebSocket client that never reads is cut off at the byte bound, whatever it subscribed to: 400
 * subscriptions to a finished job with a 1 MB image would otherwise buffer 500 MB in the server.
 */
import assert from "node:assert/strict";
import type { ImageProvider } from "../../lib/provider/grok.ts";
import { serveTestService, startTestService, submitJob, waitForStatus } from "../support/app.ts";

const encoder = new TextEncoder();

/** One masked text frame, as a client sends it. */
function frame(text: string): Uint8Array {
  const payload = encoder.encode(text);
  const length = payload.length;
  const header = length < 126
    ? [0x81, 0x80 | length]
    : [0x81, 0x80 | 126, length >> 8, length & 255];
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const out = new Uint8Array(header.length + 4 + length);
  out.set(header);
  out.set(mask, header.length);
  for (let i = 0; i < length; i++) out[header.length + 4 + i] = payload[i] ^ mask[i % 4];
  return out;
}

/** A 1 MB "PNG": the magic number and zeros (the worker stores what the provider hands it). */
function bigImageProvider(): ImageProvider {
  const bytes = new Uint8Array(1024 * 1024);
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return {
    name: "big",
    generate: () => Promise.resolve({ base64: bytes.toBase64(), mimeType: "image/png" }),
  };
}

Deno.test({
  name: "a WebSocket client that never reads is closed at the byte bound, not buffered without end",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const service = await startTestService({ provider: bigImageProvider() });
    const served = serveTestService(service);
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: Number(new URL(served.origin).port),
    });
    try {
      const token = await service.token("slow-reader");
      const { body } = await submitJob(service, token, { prompt: "a big one" });
      await waitForStatus(service, token, body.id, ["succeeded"]);
      const key = crypto.getRandomValues(new Uint8Array(16)).toBase64();
      await conn.write(encoder.encode(
        `GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ));
      await conn.write(frame(JSON.stringify({ type: "auth", token })));
      // 400 subscriptions to the finished job: each replays its 1.4 MB succeeded event. Never read.
      for (let i = 0; i < 400; i++) {
        await conn.write(frame(JSON.stringify({ type: "subscribe", id: body.id })));
      }
      const gauge = async () => {
        const text = await (await service.request("/metrics")).text();
        return Number(/^event_subscribers\{transport="ws"\} (\S+)$/m.exec(text)?.[1] ?? 0);
      };
      // Every subscription of the socket is let go (a finished job's replay ends it anyway).
      let closed = false;
      for (let i = 0; i < 200 && !closed; i++) {
        closed = (await gauge()) === 0 && i > 5;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(closed, "the non-reading socket's subscriptions were all released");
      // What reached the socket before the server cut it off: about the bound, not 500 MB.
      const seen = await readAll(conn);
      assert.ok(seen < 16 * 1024 * 1024, `sent ${seen} bytes, not hundreds of MB`);
    } finally {
      try {
        conn.close();
      } catch {
        // closed by the server
      }
      await served.close();
      await service.close();
    }
  },
});

/** How many bytes the server sent until it closed (read only now, after the fact). */
async function readAll(conn: Deno.Conn): Promise<number> {
  const buffer = new Uint8Array(1 << 16);
  let total = 0;
  while (true) {
    const timer = new Promise<null>((resolve) => setTimeout(() => resolve(null), 2_000));
    try {
      const n = await Promise.race([conn.read(buffer), timer]);
      if (n === null) break;
      total += n;
    } catch {
      break; // reset by the server, which closed with bytes unread
    }
  }
  return total;
}
