/** Tests of image bytes: media type sniffing, Retry-After parsing and the guarded download. */
import assert from "node:assert/strict";
import { downloadImage, parseRetryAfter, sniffImage } from "../../../lib/provider/images.ts";
import { PermanentError, RetryableError } from "../../../lib/errors.ts";
import { startFakeXai } from "../../support/fake_xai.ts";

const PNG_HEAD = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
const text = (value: string) => new TextEncoder().encode(value);

/** Starts a throwaway HTTP server on 127.0.0.1; stop() also ends every stream still open. */
function serve(handler: (request: Request, stopped: AbortSignal) => Response | Promise<Response>) {
  const stop = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => handler(request, stop.signal),
  );
  const host = `127.0.0.1:${server.addr.port}`;
  return {
    host,
    origin: `http://${host}`,
    async stop() {
      stop.abort();
      await server.shutdown();
    },
  };
}

/** A body that sends `first`, then one byte per `everyMs` (or chunks of `chunk`) until stopped. */
function endless(
  stopped: AbortSignal,
  options: { first?: Uint8Array; chunk?: number; everyMs: number },
) {
  let sentFirst = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!sentFirst && options.first) {
        sentFirst = true;
        controller.enqueue(options.first);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, options.everyMs));
      if (stopped.aborted) controller.close();
      else controller.enqueue(new Uint8Array(options.chunk ?? 1));
    },
  });
}

function until(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

function countingFetch(body: Uint8Array = PNG_HEAD) {
  const calls: string[] = [];
  const fetchFn = ((input: string | URL | Request) => {
    calls.push(String(input));
    return Promise.resolve(new Response(body as Uint8Array<ArrayBuffer>));
  }) as typeof fetch;
  return { calls, fetchFn };
}

const base = { maxBytes: 1_000_000, timeoutMs: 5_000 };
const GZIP_50K = await new Response(
  new Blob([new Uint8Array(50_000)]).stream().pipeThrough(new CompressionStream("gzip")),
).bytes();

Deno.test("sniffImage recognises JPEG, PNG and WebP from their magic numbers", () => {
  assert.equal(sniffImage(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0])), "image/jpeg");
  assert.equal(sniffImage(PNG_HEAD), "image/png");
  assert.equal(sniffImage(text("RIFF\x24\x00\x00\x00WEBPVP8 ")), "image/webp");
  assert.equal(sniffImage(text("RIFF\x24\x00\x00\x00WAVEfmt ")), null);
  assert.equal(sniffImage(text("<!doctype html><html></html>")), null);
  assert.equal(sniffImage(text('<svg xmlns="http://www.w3.org/2000/svg"/>')), null);
  assert.equal(sniffImage(PNG_HEAD.subarray(0, 7)), null);
  assert.equal(sniffImage(new Uint8Array(0)), null);
});

Deno.test("parseRetryAfter reads delays in seconds and HTTP dates", async (t) => {
  const now = Date.parse("2025-01-01T00:00:00Z");
  await t.step("seconds", () => assert.equal(parseRetryAfter("7", now), 7000));
  await t.step("an HTTP date in the future", () => {
    assert.equal(parseRetryAfter("Wed, 01 Jan 2025 00:00:05 GMT", now), 5000);
  });
  await t.step("a date in the past gives zero", () => {
    assert.equal(parseRetryAfter("Tue, 31 Dec 2024 23:00:00 GMT", now), 0);
  });
  await t.step("missing or malformed values give undefined", () => {
    assert.equal(parseRetryAfter(null, now), undefined);
    assert.equal(parseRetryAfter("-3", now), undefined);
    assert.equal(parseRetryAfter("soon", now), undefined);
  });
});

Deno.test("downloadImage takes the media type from the bytes, not the label", async (t) => {
  for (const kind of ["png", "jpeg", "webp"] as const) {
    await t.step(`${kind} served as image/jpeg`, async () => {
      const fake = await startFakeXai({ image: kind });
      try {
        const image = await downloadImage(`http://${fake.host}/images/1.jpg`, {
          ...base,
          allowHosts: [fake.host],
        });
        assert.equal(image.mimeType, `image/${kind}`);
        assert.equal(sniffImage(image.bytes), `image/${kind}`);
      } finally {
        await fake.close();
      }
    });
  }
});

Deno.test("downloadImage refuses URLs outside the policy without fetching them", async (t) => {
  const cases: Array<[string, string, string[]]> = [
    ["a host not in the allowlist", "https://evil.example/a.jpg", ["imgen.x.ai"]],
    ["http without an explicit port in the allowlist", "http://imgen.x.ai/a.jpg", ["imgen.x.ai"]],
    ["http on another port", "http://127.0.0.1:4011/a.jpg", ["127.0.0.1:4010"]],
    ["https on a port the allowlist does not name", "https://imgen.x.ai:8443/a.jpg", [
      "imgen.x.ai",
    ]],
    ["a file URL", "file:///etc/passwd", ["imgen.x.ai"]],
    ["credentials in the URL", "https://user:pw@imgen.x.ai/a.jpg", ["imgen.x.ai"]],
    ["a string that is not a URL", "not a url", ["imgen.x.ai"]],
  ];
  for (const [name, url, allowHosts] of cases) {
    await t.step(name, async () => {
      const { calls, fetchFn } = countingFetch();
      await assert.rejects(
        downloadImage(url, { ...base, allowHosts, fetch: fetchFn }),
        PermanentError,
      );
      assert.deepEqual(calls, []);
    });
  }
  await t.step("https to a listed host matches case-insensitively", async () => {
    const { calls, fetchFn } = countingFetch();
    const image = await downloadImage("https://IMGEN.x.ai/a.jpg", {
      ...base,
      allowHosts: ["imgen.X.AI"],
      fetch: fetchFn,
    });
    assert.equal(image.mimeType, "image/png");
    assert.equal(calls.length, 1);
  });
});

Deno.test("downloadImage rejects HTML labelled image/jpeg", async () => {
  const fake = await startFakeXai();
  try {
    await assert.rejects(
      downloadImage(`http://${fake.host}/images/html-1.jpg`, { ...base, allowHosts: [fake.host] }),
      (error) => error instanceof PermanentError && /not a JPEG, PNG or WebP/.test(error.message),
    );
  } finally {
    await fake.close();
  }
});

Deno.test("downloadImage follows checked redirects, at most three", async (t) => {
  const server = serve((request) => {
    const { pathname } = new URL(request.url);
    const hops: Record<string, string> = {
      "/one": "/two",
      "/two": "/image",
      "/away": "https://evil.example/x.jpg",
      "/loop": "/loop",
    };
    if (pathname === "/image") return new Response(PNG_HEAD);
    return new Response(null, { status: 302, headers: { location: hops[pathname] } });
  });
  try {
    const options = { ...base, allowHosts: [server.host] };
    await t.step("within the allowlist", async () => {
      const image = await downloadImage(`${server.origin}/one`, options);
      assert.equal(image.mimeType, "image/png");
    });
    await t.step("to a host outside the allowlist", async () => {
      await assert.rejects(downloadImage(`${server.origin}/away`, options), PermanentError);
    });
    await t.step("in a loop", async () => {
      await assert.rejects(downloadImage(`${server.origin}/loop`, options), /too many redirects/);
    });
  } finally {
    await server.stop();
  }
});

Deno.test("downloadImage enforces the byte cap while streaming", async (t) => {
  const server = serve((request, stopped) => {
    const path = new URL(request.url).pathname;
    if (path === "/declared") {
      return new Response(new Uint8Array(50_000), { headers: { "content-type": "image/png" } });
    }
    if (path === "/gzip") {
      // 90 bytes on the wire, 50,000 once fetch has decompressed them.
      return new Response(GZIP_50K, { headers: { "content-encoding": "gzip" } });
    }
    if (path === "/exact") {
      return new Response(new Uint8Array([...PNG_HEAD, ...new Uint8Array(988)]));
    }
    return new Response(endless(stopped, { first: PNG_HEAD, chunk: 16 * 1024, everyMs: 1 }));
  });
  try {
    const options = { ...base, maxBytes: 10_000, allowHosts: [server.host] };
    await t.step("an endless body is cut off", async () => {
      await assert.rejects(downloadImage(`${server.origin}/endless`, options), /larger than 10000/);
    });
    await t.step("a large Content-Length is rejected early", async () => {
      await assert.rejects(downloadImage(`${server.origin}/declared`, options), PermanentError);
    });
    await t.step("a small Content-Length of a compressed body does not lift the cap", async () => {
      await assert.rejects(downloadImage(`${server.origin}/gzip`, options), /larger than 10000/);
    });
    await t.step("a body of its declared length within the cap is read whole", async () => {
      const image = await downloadImage(`${server.origin}/exact`, options);
      assert.equal(image.bytes.length, 1_000);
    });
  } finally {
    await server.stop();
  }
});

Deno.test("downloadImage fails retryably when headers or body miss the deadline", async (t) => {
  const server = serve(async (request, stopped) => {
    if (new URL(request.url).pathname === "/hang") await until(stopped);
    return new Response(endless(stopped, { first: PNG_HEAD, everyMs: 20 }));
  });
  try {
    const options = { ...base, timeoutMs: 300, allowHosts: [server.host] };
    await t.step("a slow drip", async () => {
      await assert.rejects(downloadImage(`${server.origin}/drip`, options), RetryableError);
    });
    await t.step("no headers at all", async () => {
      await assert.rejects(downloadImage(`${server.origin}/hang`, options), RetryableError);
    });
  } finally {
    await server.stop();
  }
});

Deno.test("downloadImage classifies error statuses and network errors", async (t) => {
  const server = serve((request) => {
    const status = Number(new URL(request.url).pathname.slice(1));
    return new Response("no", { status, headers: { "retry-after": "7" } });
  });
  try {
    const options = { ...base, allowHosts: [server.host] };
    for (const status of [503, 429]) {
      await t.step(`${status} is retryable with Retry-After`, async () => {
        await assert.rejects(
          downloadImage(`${server.origin}/${status}`, options),
          (error) => error instanceof RetryableError && error.retryAfterMs === 7000,
        );
      });
    }
    await t.step("404 is permanent", async () => {
      await assert.rejects(downloadImage(`${server.origin}/404`, options), PermanentError);
    });
  } finally {
    await server.stop();
  }
  await t.step("a refused connection is retryable", async () => {
    await assert.rejects(
      downloadImage(`${server.origin}/image`, { ...base, allowHosts: [server.host] }),
      RetryableError,
    );
  });
});

Deno.test("downloadImage propagates the caller's abort as an AbortError", async () => {
  const server = serve(async (_request, stopped) => {
    await until(stopped);
    return new Response(null, { status: 503 });
  });
  try {
    const controller = new AbortController();
    const pending = downloadImage(`${server.origin}/hang`, {
      ...base,
      allowHosts: [server.host],
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(pending, (error) => {
      assert.ok(!(error instanceof RetryableError) && !(error instanceof PermanentError));
      assert.equal((error as DOMException).name, "AbortError");
      return true;
    });
  } finally {
    await server.stop();
  }
});
