/**
 * A WebSocket client that never reads is cut off at the byte bound, whatever it subscribed to: 400
 * subscriptions to a finished job with a 1 MB image would otherwise buffer 500 MB in the server. One
 * that reads late gets every replay: they go out as fast as it reads.
 */
import assert from "node:assert/strict";
import type { ImageProvider } from "../../lib/provider/grok.ts";
import { READ_WAIT_MS } from "../../routes/ws_session.ts";
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

/**
 * A service whose `owner` has a finished job with a 1 MB image, and a raw TCP connection to it that
 * upgraded to a WebSocket and sent its `auth` (nothing is read from it yet).
 */
async function finishedJobOnRawSocket(owner: string) {
  const service = await startTestService({ provider: bigImageProvider() });
  const served = serveTestService(service);
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: Number(new URL(served.origin).port),
  });
  const token = await service.token(owner);
  const { body } = await submitJob(service, token, { prompt: "a big one" });
  await waitForStatus(service, token, body.id, ["succeeded"]);
  const key = crypto.getRandomValues(new Uint8Array(16)).toBase64();
  await conn.write(encoder.encode(
    `GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  ));
  await conn.write(frame(JSON.stringify({ type: "auth", token })));
  return { service, served, conn, body };
}

Deno.test({
  name: "a WebSocket client that never reads is closed at the byte bound, not buffered without end",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { service, served, conn, body } = await finishedJobOnRawSocket("slow-reader");
    try {
      // 400 subscriptions to the finished job: each replays its 1.4 MB succeeded event. Never read.
      for (let i = 0; i < 400; i++) {
        await conn.write(frame(JSON.stringify({ type: "subscribe", id: body.id })));
      }
      // Still unread after READ_WAIT_MS: the server gives up on the client and closes the socket.
      await new Promise((resolve) => setTimeout(resolve, READ_WAIT_MS + 1_500));
      const text = await (await service.request("/metrics")).text();
      const gauge = Number(/^event_subscribers\{transport="ws"\} (\S+)$/m.exec(text)?.[1] ?? 0);
      assert.equal(gauge, 0, "the non-reading socket's subscriptions were all released");
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

Deno.test({
  name:
    "a WebSocket client that reads late gets every replay, paced by its reads, and is not cut off",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { service, served, conn, body } = await finishedJobOnRawSocket("late-reader");
    try {
      // 40 replays of 1.4 MB (56 MB, far past the 1 MB bound), then a pause before reading at all.
      const count = 40;
      for (let i = 0; i < count; i++) {
        await conn.write(frame(JSON.stringify({ type: "subscribe", id: body.id })));
      }
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const { notifications, closed } = await readFrames(conn, count);
      assert.equal(closed, false, "the socket was not cut off");
      assert.equal(notifications, count, "every replay's success arrived");
    } finally {
      conn.close();
      await served.close();
      await service.close();
    }
  },
});

/**
 * Reads the server's frames until `count` succeeded notifications came (or 10 s of silence): how
 * many, and whether a close frame came.
 */
async function readFrames(conn: Deno.Conn, count: number) {
  const decoder = new TextDecoder();
  let pending = new Uint8Array(0);
  let headerDone = false;
  let notifications = 0;
  let closed = false;
  const buffer = new Uint8Array(1 << 20);
  while (notifications < count && !closed) {
    const timer = new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000));
    const n = await Promise.race([conn.read(buffer), timer]);
    if (n === null) break;
    const joined = new Uint8Array(pending.length + n);
    joined.set(pending);
    joined.set(buffer.subarray(0, n), pending.length);
    pending = joined;
    if (!headerDone) {
      const end = decoder.decode(pending).indexOf("\r\n\r\n");
      if (end < 0) continue;
      pending = pending.subarray(end + 4);
      headerDone = true;
    }
    // Unmasked server frames: opcode, then a 7-bit, 16-bit or 64-bit length.
    while (pending.length >= 2) {
      let length = pending[1] & 127;
      let at = 2;
      if (length === 126) {
        if (pending.length < 4) break;
        length = (pending[2] << 8) | pending[3];
        at = 4;
      } else if (length === 127) {
        if (pending.length < 10) break;
        length = Number(new DataView(pending.buffer, pending.byteOffset + 2, 8).getBigUint64(0));
        at = 10;
      }
      if (pending.length < at + length) break;
      const opcode = pending[0] & 15;
      if (opcode === 8) closed = true;
      if (opcode === 1) {
        const text = decoder.decode(pending.subarray(at, Math.min(at + 300, at + length)));
        if (text.startsWith('{"type":"notification"') && text.includes('"type":"succeeded"')) {
          notifications += 1;
        }
      }
      pending = pending.slice(at + length);
    }
  }
  return { notifications, closed };
}

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
