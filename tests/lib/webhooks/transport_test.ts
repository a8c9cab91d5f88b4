import assert from "node:assert/strict";
import type { WebhookTarget } from "../../../lib/webhooks/egress.ts";
import { sendWebhook } from "../../../lib/webhooks/transport.ts";
import { GENEROUS_MS, Inbox, startReceiver, tlsFixture } from "./helpers.ts";

const TLS = tlsFixture();

const REQUEST = { body: '{"id":"j1"}', headers: { "webhook-id": "msg_j1_succeeded_3" } };

function pinned(url: string, port: number): WebhookTarget {
  const parsed = new URL(url);
  return { url: parsed, address: "127.0.0.1", port, tls: parsed.protocol === "https:" };
}

function options(extra: { caCerts?: string[]; maxResponseBytes?: number } = {}) {
  return { signal: AbortSignal.timeout(GENEROUS_MS), maxResponseBytes: 64 * 1024, ...extra };
}

/** A raw TCP server on 127.0.0.1: `onConn` gets each connection; `closed` sees each one end. */
function rawServer(onConn: (conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const ended = new Inbox<number>();
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      onConn(conn).catch(() => {}).finally(() => ended.push(conns.indexOf(conn)));
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    ended,
    close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed already
        }
      }
    },
  };
}

Deno.test("sendWebhook connects to the pinned address and names the URL's host", async () => {
  const receiver = startReceiver(() => new Response(null, { status: 204 }));
  try {
    const url = `http://hooks.test:${receiver.port}/hook?x=1`;
    const answer = await sendWebhook(pinned(url, receiver.port), REQUEST, options());
    assert.equal(answer.status, 204);
    const got = await receiver.requests.next("the request");
    assert.equal(got.url, url); // hooks.test does not resolve: the connection used the pinned address
    assert.equal(got.headers.get("host"), `hooks.test:${receiver.port}`);
    assert.equal(got.headers.get("content-type"), "application/json");
    assert.equal(got.headers.get("webhook-id"), "msg_j1_succeeded_3");
    assert.equal(got.body, REQUEST.body);
  } finally {
    await receiver.close();
  }
});

Deno.test("sendWebhook speaks TLS to the pinned address, checking the certificate against the URL's host", async (t) => {
  const receiver = startReceiver(() => new Response("ok"), { tls: true });
  try {
    await t.step("the certificate's name: delivered", async () => {
      const target = pinned(`https://hooks.test:${receiver.port}/h`, receiver.port);
      const answer = await sendWebhook(target, REQUEST, options({ caCerts: [TLS.ca] }));
      assert.equal(answer.status, 200);
      assert.equal((await receiver.requests.next()).body, REQUEST.body);
    });
    await t.step("another name at the same address: refused", async () => {
      const target = pinned(`https://other.test:${receiver.port}/h`, receiver.port);
      await assert.rejects(
        sendWebhook(target, REQUEST, options({ caCerts: [TLS.ca] })),
        /certificate/,
      );
    });
    await t.step("a certificate from an unknown authority: refused", async () => {
      const target = pinned(`https://hooks.test:${receiver.port}/h`, receiver.port);
      await assert.rejects(sendWebhook(target, REQUEST, options()), /certificate|issuer/i);
    });
  } finally {
    await receiver.close();
  }
});

Deno.test("sendWebhook returns a redirect as it is, without following it", async () => {
  const elsewhere = startReceiver();
  const receiver = startReceiver(() =>
    new Response(null, { status: 302, headers: { location: elsewhere.url() } })
  );
  try {
    const target = pinned(receiver.url(), receiver.port);
    const answer = await sendWebhook(target, REQUEST, options());
    assert.equal(answer.status, 302);
    assert.equal(answer.headers.get("location"), elsewhere.url());
    assert.equal(elsewhere.requests.all.length, 0);
  } finally {
    await Promise.all([receiver.close(), elsewhere.close()]);
  }
});

Deno.test("sendWebhook gives up at the signal and closes the connection of a silent receiver", async () => {
  const arrived = new Inbox<number>();
  const server = rawServer(async (conn) => {
    const buf = new Uint8Array(64 * 1024);
    let n: number | null;
    while ((n = await conn.read(buf)) !== null) arrived.push(n); // reads everything, answers nothing
  });
  try {
    const deadline = new AbortController();
    const target = pinned(`http://127.0.0.1:${server.port}/`, server.port);
    const sent = sendWebhook(target, REQUEST, { ...options(), signal: deadline.signal });
    await arrived.next("the request");
    deadline.abort(new DOMException("The deadline passed", "TimeoutError"));
    await assert.rejects(sent, { name: "TimeoutError" });
    await server.ended.next("the connection closing"); // the receiver saw the connection end
  } finally {
    server.close();
  }
});

Deno.test("sendWebhook skips informational answers and reads Retry-After", async () => {
  const server = rawServer(async (conn) => {
    await conn.read(new Uint8Array(4096));
    const answer = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
      "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n";
    await conn.write(new TextEncoder().encode(answer));
  });
  try {
    const target = pinned(`http://127.0.0.1:${server.port}/`, server.port);
    const answer = await sendWebhook(target, REQUEST, options());
    assert.equal(answer.status, 503);
    assert.equal(answer.headers.get("retry-after"), "7");
  } finally {
    server.close();
  }
});

Deno.test("sendWebhook reads at most maxResponseBytes of an answer", async () => {
  const server = rawServer(async (conn) => {
    await conn.read(new Uint8Array(4096));
    const huge = `HTTP/1.1 200 OK\r\nX-Pad: ${"a".repeat(100_000)}\r\n\r\n`;
    await conn.write(new TextEncoder().encode(huge)).catch(() => {});
  });
  try {
    const target = pinned(`http://127.0.0.1:${server.port}/`, server.port);
    await assert.rejects(
      sendWebhook(target, REQUEST, options({ maxResponseBytes: 1024 })),
      /no end of headers in 1024 bytes/,
    );
  } finally {
    server.close();
  }
});

Deno.test("sendWebhook rejects when nothing listens", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await assert.rejects(sendWebhook(pinned(`http://127.0.0.1:${port}/`, port), REQUEST, options()));
});
