/**
 * The service with an S3-compatible image store (a real s3rver, a real redis-server): the image routes
 * answer 302 to a presigned URL or serve the bytes, and an API process's relay reads a success's image
 * from the store once, however many subscribers watch it.
 */
import assert from "node:assert/strict";
import type { ImageProvider } from "../../lib/provider/grok.ts";
import {
  bearer,
  readSse,
  serveTestService,
  startTestService,
  submitJob,
  type TestService,
  until,
  waitForStatus,
} from "../support/app.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { S3_KEY, type S3Server, startS3 } from "../support/s3_server.ts";

/** Two PNGs per call, the second one byte longer; waits for `gate` first when given. */
function twoImages(gate?: Promise<void>): ImageProvider & { calls: number } {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]);
  const provider = {
    name: "two",
    calls: 0,
    async generate() {
      provider.calls++;
      await gate;
      return {
        base64: png.toBase64(),
        mimeType: "image/png" as const,
        more: [{ base64: new Uint8Array([...png, 1]).toBase64(), mimeType: "image/png" as const }],
      };
    },
  };
  return provider;
}

function env(redis: RedisServer, s3: S3Server, prefix: string): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
    IMAGE_STORE_URL: `s3://${s3.bucket}/imgs`,
    S3_ENDPOINT: s3.url,
    AWS_ACCESS_KEY_ID: S3_KEY.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3_KEY.secretAccessKey,
  };
}

function storeTest(name: string, fn: (redis: RedisServer, s3: S3Server) => Promise<void>): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const [redis, s3] = await Promise.all([startRedis(), startS3()]);
      try {
        await fn(redis, s3);
      } finally {
        await Promise.all([redis.stop(), s3.stop()]);
      }
    },
  });
}

async function bytesOf(res: Response): Promise<string> {
  assert.equal(res.status, 200);
  return new Uint8Array(await res.arrayBuffer()).toBase64();
}

storeTest(
  "With IMAGE_STORE_REDIRECT=1 the image routes answer 302 to a presigned URL",
  async (redis, s3) => {
    const provider = twoImages();
    const service = await startTestService({
      env: { ...env(redis, s3, "rd:"), IMAGE_STORE_REDIRECT: "1" },
      provider,
    });
    try {
      const token = await service.token("alice");
      const { body } = await submitJob(service, token, { prompt: "two foxes", n: 2 });
      const job = await waitForStatus(service, token, body.id, ["succeeded"]);
      const expected = [job.result.image.split(",")[1], null as string | null];
      for (const [k, path] of [`/v1/jobs/${body.id}/image`, job.result.images[1].url].entries()) {
        const res = await service.request(path, { headers: bearer(token) });
        assert.equal(res.status, 302);
        assert.equal(res.headers.get("Cache-Control"), "no-store");
        const location = new URL(res.headers.get("Location")!);
        assert.equal(location.origin, s3.url);
        assert.equal(location.pathname, `/${s3.bucket}/imgs/${body.id}/${job.attempts}/${k}.png`);
        assert.ok(Number(location.searchParams.get("X-Amz-Expires")) <= 900);
        const bytes = await bytesOf(await fetch(location));
        if (k === 0) assert.equal(bytes, expected[0]);
        else assert.equal(Uint8Array.fromBase64(bytes).at(-1), 1, "the second image");
      }
      // A client that follows redirects (the CLI, a browser) gets the bytes; its Bearer token stays
      // behind (fetch drops Authorization across origins, and S3 refuses two kinds of auth at once).
      const served = serveTestService(service);
      try {
        const followed = await fetch(`${served.origin}/v1/jobs/${body.id}/image`, {
          headers: bearer(token),
        });
        assert.equal(followed.url.startsWith(s3.url), true);
        assert.equal(await bytesOf(followed), expected[0]);
      } finally {
        await served.close();
      }
      // The page may show images from the store's origin, where its image links now lead.
      const page = await service.request("/");
      const csp = page.headers.get("Content-Security-Policy")!;
      await page.body?.cancel();
      assert.ok(csp.includes(`img-src 'self' ${s3.url} blob: data:`), csp);
      assert.ok(csp.includes(`connect-src 'self' ${s3.url}`), csp);
    } finally {
      await service.close();
    }
  },
);

storeTest("Without the redirect the routes serve the bytes from the store", async (redis, s3) => {
  const service = await startTestService({ env: env(redis, s3, "sv:"), provider: twoImages() });
  try {
    const token = await service.token("alice");
    const { body } = await submitJob(service, token, { prompt: "two foxes", n: 2 });
    const job = await waitForStatus(service, token, body.id, ["succeeded"]);
    const res = await service.request(`/v1/jobs/${body.id}/images/1`, { headers: bearer(token) });
    assert.equal(res.headers.get("Content-Type"), "image/png");
    assert.equal(Uint8Array.fromBase64(await bytesOf(res)).at(-1), 1);
    const image = await service.request(job.urls.image);
    assert.equal(await bytesOf(image), job.result.image.split(",")[1]);
  } finally {
    await service.close();
  }
});

storeTest(
  "An API process's relay reads a success's image from the store once for 10 subscribers",
  async (redis, s3) => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => release = resolve);
    const base = env(redis, s3, "rl:");
    const services: TestService[] = [];
    try {
      const worker = await startTestService({
        env: { ...base, ROLE: "worker" },
        provider: twoImages(gate),
      });
      services.push(worker);
      const api = await startTestService({ env: { ...base, ROLE: "api" } });
      services.push(api);
      const token = await api.token("alice");
      const { body } = await submitJob(api, token);
      const streams = await Promise.all(
        Array.from(
          { length: 10 },
          () => api.request(`/v1/jobs/${body.id}/events`, { headers: bearer(token) }),
        ),
      );
      await until(() => api.runtime.relay !== null, "the relay");
      const reads = streams.map((res) => readSse(res));
      release();
      const all = await Promise.all(reads);
      const key = `imgs/${body.id}/1/0.png`;
      for (const events of all) {
        const success = JSON.parse(events.at(-1)!.data);
        assert.equal(success.type, "succeeded");
        assert.match(success.data.image, /^data:image\/png;base64,iVBORw0KGgo/);
        assert.equal(success.data.images.length, 2);
      }
      // Late subscribers replay the job's log, and GETs read the job: the process's copy serves them.
      const late = await Promise.all(
        Array.from({ length: 5 }, async () =>
          await readSse(
            await api.request(`/v1/jobs/${body.id}/events`, { headers: bearer(token) }),
          )),
      );
      for (const events of late) assert.match(events.at(-1)!.data, /data:image\/png;base64,iVBOR/);
      const job = await waitForStatus(api, token, body.id, ["succeeded"]);
      assert.match(job.result.image, /^data:image\/png;base64,iVBOR/);
      assert.equal(s3.gets(key), 1, "one GET of the image for every reader in the process");
    } finally {
      for (const service of services.reverse()) await service.close();
    }
  },
);

Deno.test("IMAGE_STORE_URL=memory:// keeps the embedded broker's images in the in-memory store", async () => {
  const service = await startTestService({
    env: { IMAGE_STORE_URL: "memory://m" },
    provider: twoImages(),
  });
  try {
    const token = await service.token("alice");
    const { body } = await submitJob(service, token, { prompt: "two foxes", n: 2 });
    const job = await waitForStatus(service, token, body.id, ["succeeded"]);
    assert.match(job.result.image, /^data:image\/png;base64,iVBOR/);
    const second = await service.request(job.result.images[1].url);
    assert.equal(Uint8Array.fromBase64(await bytesOf(second)).at(-1), 1);
    const record = await service.runtime.deps.broker.get(body.id);
    assert.deepEqual(record?.objects?.map((o) => o.key), [
      `m/${body.id}/1/0.png`,
      `m/${body.id}/1/1.png`,
    ]);
  } finally {
    await service.close();
  }
});
