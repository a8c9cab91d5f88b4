/** `deno task submit` when the event stream drops or fails, and how it gets the image. */
import assert from "node:assert/strict";
import { cutAfterFirstEvent, runCli, startProxy } from "./cli_helpers.ts";
import { jobIdOf, startFixture, states } from "./fixture.ts";

Deno.test("deno task submit through a proxy that drops, refuses or rewrites requests", async (t) => {
  const f = await startFixture({ DEV_MODE: "1" });
  const { service, xai, cwd, fakeImage } = f;
  try {
    await t.step("a dropped event stream is resumed with Last-Event-ID", async () => {
      xai.inject({ delayMs: 1_000 });
      let cut = false;
      let firstEventId: string | undefined;
      const proxy = await startProxy(service.url, async (seen, upstream) => {
        const res = await upstream();
        if (!seen.path.endsWith("/events") || cut) return res;
        cut = true;
        return cutAfterFirstEvent(res, (sent) => firstEventId = sent.match(/^id: (.+)$/m)?.[1]);
      });
      try {
        const { code, stdout, stderr } = await runCli(["resume", "--url", proxy.url], { cwd });
        assert.equal(code, 0, stderr);
        assert.deepEqual(states(stdout), ["queued", "started", "succeeded"]);
        const streams = proxy.seen.filter((s) => s.path.endsWith("/events"));
        assert.ok(streams.length >= 2, JSON.stringify(proxy.seen));
        assert.equal(streams[0].lastEventId, null);
        assert.ok(firstEventId);
        assert.equal(streams[1].lastEventId, firstEventId);
      } finally {
        await proxy.close();
      }
    });

    await t.step("when no event stream opens, it polls the job and still saves it", async () => {
      const proxy = await startProxy(service.url, async (seen, upstream) => {
        if (!seen.path.endsWith("/events")) return await upstream();
        return Response.json({ error: { code: "unavailable", message: "Cannot serve" } }, {
          status: 503,
        });
      });
      try {
        const { code, stdout, stderr } = await runCli(["polled", "--url", proxy.url], { cwd });
        assert.equal(code, 0, stderr);
        const id = jobIdOf(stdout);
        assert.ok(proxy.seen.some((s) => s.method === "GET" && s.path === `/v1/jobs/${id}`));
        assert.deepEqual(await Deno.readFile(`${cwd}/${id}.png`), fakeImage);
      } finally {
        await proxy.close();
      }
    });

    await t.step("it prefers GET /v1/jobs/:id/image and names the file by its type", async () => {
      const webp = Uint8Array.fromBase64(
        "UklGRkIAAABXRUJQVlA4IDYAAADQAQCdASoIAAgAAgA0JaACdAD0rsa2AAD+rDNlRCXxcq5LNm48Bz90rM7L/I78Q8gfO/sqIAA=",
      );
      const proxy = await startProxy(service.url, async (seen, upstream) => {
        if (!seen.path.endsWith("/image")) return await upstream();
        return new Response(webp, { headers: { "Content-Type": "image/webp" } });
      });
      try {
        const { code, stdout, stderr } = await runCli(["direct", "--url", proxy.url], { cwd });
        assert.equal(code, 0, stderr);
        const id = jobIdOf(stdout);
        assert.ok(proxy.seen.some((s) => s.path === `/v1/jobs/${id}/image`));
        assert.deepEqual(await Deno.readFile(`${cwd}/${id}.webp`), webp);
      } finally {
        await proxy.close();
      }
    });

    await t.step("without the image route it saves the data URL of the event", async () => {
      const proxy = await startProxy(service.url, async (seen, upstream) => {
        if (!seen.path.endsWith("/image")) return await upstream();
        return Response.json({ error: { code: "not_found", message: "Not found" } }, {
          status: 404,
        });
      });
      try {
        const { code, stdout, stderr } = await runCli(["fallback", "--url", proxy.url], { cwd });
        assert.equal(code, 0, stderr);
        const id = jobIdOf(stdout);
        assert.ok(proxy.seen.some((s) => s.path === `/v1/jobs/${id}/image`));
        assert.deepEqual(await Deno.readFile(`${cwd}/${id}.png`), fakeImage);
      } finally {
        await proxy.close();
      }
    });
  } finally {
    await f.close();
  }
});
