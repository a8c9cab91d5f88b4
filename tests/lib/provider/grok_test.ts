/** Tests of the image providers: the xAI client's requests and errors, and the placeholder. */
import assert from "node:assert/strict";
import {
  boundedRetryAfter,
  createGrokProvider,
  createPlaceholderProvider,
  type GrokProviderOptions,
  MAX_RETRY_AFTER_MS,
} from "../../../lib/provider/grok.ts";
import { PermanentError, RetryableError } from "../../../lib/errors.ts";
import { sniffImage } from "../../../lib/provider/images.ts";
import { type FakeXai, type FakeXaiOptions, startFakeXai } from "../../support/fake_xai.ts";

const API_KEY = "xai-test-key-0123456789";

async function withFake(
  options: FakeXaiOptions,
  body: (
    fake: FakeXai,
    provider: (extra?: Partial<GrokProviderOptions>) => ReturnType<typeof createGrokProvider>,
  ) => Promise<void>,
): Promise<void> {
  const fake = await startFakeXai(options);
  try {
    await body(fake, (extra = {}) =>
      createGrokProvider({
        apiBase: fake.url,
        apiKey: API_KEY,
        model: "grok-test-image",
        responseFormat: "b64_json",
        imageHosts: [fake.host],
        timeoutMs: 5_000,
        downloadTimeoutMs: 5_000,
        ...extra,
      }));
  } finally {
    await fake.close();
  }
}

function isAbortError(error: unknown): boolean {
  assert.ok(!(error instanceof RetryableError) && !(error instanceof PermanentError));
  assert.equal((error as DOMException).name, "AbortError");
  return true;
}

Deno.test("the Grok provider returns a b64_json image with the right request", async () => {
  await withFake({ image: "png" }, async (fake, provider) => {
    const image = await provider().generate({ prompt: "a cat", aspectRatio: "16:9" });
    assert.equal(image.mimeType, "image/png");
    assert.equal(sniffImage(Uint8Array.fromBase64(image.base64)), "image/png");
    assert.equal(image.revisedPrompt, "revised: a cat");
    assert.equal(fake.calls, 1);
    assert.deepEqual(fake.requests[0].body, {
      model: "grok-test-image",
      prompt: "a cat",
      n: 1,
      response_format: "b64_json",
      aspect_ratio: "16:9",
    });
    assert.equal(fake.requests[0].authorization, `Bearer ${API_KEY}`);
    await provider().generate({ prompt: "a dog", model: "grok-other" });
    assert.deepEqual(fake.requests[1].body, {
      model: "grok-other",
      prompt: "a dog",
      n: 1,
      response_format: "b64_json",
    });
  });
});

Deno.test("the Grok provider downloads url-mode images and sniffs their type", async (t) => {
  for (const kind of ["png", "jpeg", "webp"] as const) {
    await t.step(`${kind} served as image/jpeg`, async () => {
      await withFake({ image: kind }, async (fake, provider) => {
        const image = await provider({ responseFormat: "url" }).generate({ prompt: "a hill" });
        assert.equal(image.mimeType, `image/${kind}`);
        assert.equal(image.revisedPrompt, "revised: a hill");
        assert.equal((fake.requests[0].body as { response_format: string }).response_format, "url");
      });
    });
  }
});

Deno.test("the Grok provider maps 5xx, 429 and timeouts to RetryableError", async (t) => {
  await withFake({}, async (fake, provider) => {
    await t.step("500", async () => {
      fake.inject({ status: 500 });
      await assert.rejects(provider().generate({ prompt: "p" }), /xAI answered 500/);
    });
    await t.step("429 with Retry-After in seconds", async () => {
      fake.inject({ status: 429, retryAfter: "3" });
      await assert.rejects(
        provider().generate({ prompt: "p" }),
        (error) => error instanceof RetryableError && error.retryAfterMs === 3000,
      );
    });
    await t.step("429 with Retry-After as an HTTP date", async () => {
      fake.inject({ status: 429, retryAfter: new Date(Date.now() + 60_000).toUTCString() });
      await assert.rejects(provider().generate({ prompt: "p" }), (error) => {
        assert.ok(error instanceof RetryableError);
        assert.ok(error.retryAfterMs! > 30_000 && error.retryAfterMs! <= 60_000);
        return true;
      });
    });
    await t.step("429 with an absurd Retry-After waits only the cap", async () => {
      for (const retryAfter of ["99999999", "9".repeat(400), "Fri, 01 Jan 9999 00:00:00 GMT"]) {
        fake.inject({ status: 429, retryAfter });
        await assert.rejects(
          provider().generate({ prompt: "p" }),
          (error) => error instanceof RetryableError && error.retryAfterMs === MAX_RETRY_AFTER_MS,
        );
      }
    });
    await t.step("429 with an unreadable Retry-After falls back to the backoff", async () => {
      for (const retryAfter of ["-5", "NaN", "soon", ""]) {
        fake.inject({ status: 429, retryAfter });
        await assert.rejects(
          provider().generate({ prompt: "p" }),
          (error) => error instanceof RetryableError && error.retryAfterMs === undefined,
        );
      }
    });
    await t.step("a slow answer past the timeout", async () => {
      fake.inject({ delayMs: 3_000 });
      await assert.rejects(provider({ timeoutMs: 200 }).generate({ prompt: "p" }), RetryableError);
    });
    await t.step("a request that never gets an answer", async () => {
      fake.inject({ hang: true });
      await assert.rejects(provider({ timeoutMs: 200 }).generate({ prompt: "p" }), RetryableError);
    });
  });
  await t.step("a refused connection", async () => {
    const fake = await startFakeXai();
    await fake.close();
    const provider = createGrokProvider({
      apiBase: fake.url,
      apiKey: API_KEY,
      model: "m",
      responseFormat: "b64_json",
      imageHosts: [],
    });
    await assert.rejects(provider.generate({ prompt: "p" }), RetryableError);
  });
});

Deno.test("boundedRetryAfter reads seconds and HTTP dates within 0 and the cap", () => {
  const now = Date.parse("2025-01-01T00:00:00Z");
  assert.equal(boundedRetryAfter("7", now), 7_000);
  assert.equal(boundedRetryAfter(" 1.5 ", now), 1_500);
  assert.equal(boundedRetryAfter("Wed, 01 Jan 2025 00:00:05 GMT", now), 5_000);
  assert.equal(boundedRetryAfter("Tue, 31 Dec 2024 23:00:00 GMT", now), 0);
  assert.equal(boundedRetryAfter("99999999", now), MAX_RETRY_AFTER_MS);
  assert.equal(boundedRetryAfter("1e400", now), undefined);
  for (const bad of [null, "", "-3", "NaN", "Infinity", "soon", "0x10"]) {
    assert.equal(boundedRetryAfter(bad, now), undefined, String(bad));
  }
  assert.ok(MAX_RETRY_AFTER_MS <= 2 ** 31 - 1, "within what setTimeout can wait");
});

Deno.test("the Grok provider maps 400 to PermanentError with the provider's message", async (t) => {
  await withFake({}, async (fake, provider) => {
    await t.step("the message is included", async () => {
      fake.inject({ status: 400, message: "Prompt violates the content policy" });
      await assert.rejects(provider().generate({ prompt: "p" }), (error) => {
        assert.ok(error instanceof PermanentError);
        assert.match(error.message, /400: Prompt violates the content policy$/);
        return true;
      });
    });
    await t.step("the API key never appears and long messages are truncated", async () => {
      fake.inject({ status: 400, message: `bad key ${API_KEY} ${"x".repeat(5000)}` });
      await assert.rejects(provider().generate({ prompt: "p" }), (error) => {
        assert.ok(error instanceof PermanentError);
        assert.ok(!error.message.includes(API_KEY));
        assert.ok(error.message.length < 400);
        return true;
      });
    });
  });
});

Deno.test("the Grok provider rejects content that is not an allowed image", async (t) => {
  await withFake({}, async (fake, provider) => {
    const cases = [
      ["bad b64_json bytes", { badBytes: true }, "b64_json"],
      ["bad downloaded bytes", { badBytes: true }, "url"],
      ["HTML as base64", { html: true }, "b64_json"],
      ["HTML served as image/jpeg", { html: true }, "url"],
      ["a redirect outside the allowlist", { redirectTo: "https://evil.example/a.jpg" }, "url"],
    ] as const;
    for (const [name, fault, responseFormat] of cases) {
      await t.step(name, async () => {
        fake.inject(fault);
        await assert.rejects(
          provider({ responseFormat }).generate({ prompt: "p" }),
          PermanentError,
        );
      });
    }
    await t.step("a redirect inside the allowlist is followed", async () => {
      fake.inject({ redirectTo: `http://${fake.host}/images/elsewhere.jpg` });
      const image = await provider({ responseFormat: "url" }).generate({ prompt: "p" });
      assert.equal(image.mimeType, "image/png");
    });
    await t.step("an image host outside the allowlist", async () => {
      const other = provider({ responseFormat: "url", imageHosts: ["imgen.x.ai"] });
      await assert.rejects(other.generate({ prompt: "p" }), /not in the allowlist/);
    });
    await t.step("http to an allowlisted host without an explicit port", async () => {
      const other = provider({ responseFormat: "url", imageHosts: ["127.0.0.1"] });
      await assert.rejects(other.generate({ prompt: "p" }), PermanentError);
    });
  });
  for (const [name, body] of [["not JSON", "<html>"], ["no data", '{"data":[]}']]) {
    await t.step(`a response that is ${name}`, async () => {
      const provider = createGrokProvider({
        apiBase: "https://api.x.ai/v1",
        apiKey: API_KEY,
        model: "m",
        responseFormat: "b64_json",
        imageHosts: [],
        fetch: () => Promise.resolve(new Response(body)),
      });
      await assert.rejects(provider.generate({ prompt: "p" }), PermanentError);
    });
  }
});

Deno.test("the Grok provider propagates the caller's abort as an AbortError", async (t) => {
  await withFake({}, async (fake, provider) => {
    await t.step("during the request", async () => {
      fake.inject({ hang: true });
      const controller = new AbortController();
      const pending = provider().generate({ prompt: "p" }, { signal: controller.signal });
      setTimeout(() => controller.abort(), 50);
      await assert.rejects(pending, isAbortError);
    });
    await t.step("before the request", async () => {
      const signal = AbortSignal.abort();
      await assert.rejects(provider().generate({ prompt: "p" }, { signal }), isAbortError);
      assert.equal(fake.calls, 1);
    });
  });
});

Deno.test("the placeholder provider draws a PNG and honours the abort signal", async (t) => {
  await t.step("a square PNG by default", async () => {
    const provider = createPlaceholderProvider();
    assert.equal(provider.name, "placeholder");
    const image = await provider.generate({ prompt: "a boat" });
    const bytes = Uint8Array.fromBase64(image.base64);
    assert.equal(image.mimeType, "image/png");
    assert.equal(sniffImage(bytes), "image/png");
    const view = new DataView(bytes.buffer);
    assert.deepEqual([view.getUint32(16), view.getUint32(20)], [256, 256]);
  });
  await t.step("the aspect ratio shapes the image", async () => {
    const image = await createPlaceholderProvider().generate({ prompt: "a", aspectRatio: "16:9" });
    const view = new DataView(Uint8Array.fromBase64(image.base64).buffer);
    assert.deepEqual([view.getUint32(16), view.getUint32(20)], [256, 144]);
  });
  await t.step("an abort during the simulated latency", async () => {
    const provider = createPlaceholderProvider({ latencyMs: 10_000 });
    const controller = new AbortController();
    const pending = provider.generate({ prompt: "a" }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    await assert.rejects(pending, isAbortError);
  });
});
