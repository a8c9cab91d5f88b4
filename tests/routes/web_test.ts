/** Tests of the web page's routes (`/`, `/static/*`) and of `/docs`, in memory. */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { Hono } from "hono";
import { createApp } from "../../routes/app.ts";
import type { AppDeps } from "../../routes/deps.ts";
import { DOCS_CSP, docsRoutes, SCALAR_BUNDLE_PATH, scalarBundleUrl } from "../../routes/docs.ts";
import { respond, toHttpError } from "../../routes/errors.ts";
import { PAGE_CSP, PAGE_FILES, STATIC_DIR, webRoutes } from "../../routes/web.ts";
import { withService } from "../support/app.ts";

/** Every `<tag …>` of `html` whose name is `tag`. */
function tags(html: string, tag: string): string[] {
  return [...html.matchAll(new RegExp(`<${tag}\\b[^>]*>`, "gi"))].map((m) => m[0]);
}

/** The versioned links of `html` (`/static/a.js?v=…` or `/docs/a.js?v=…`). */
function links(html: string): string[] {
  return [...html.matchAll(/"(\/(?:static|docs)\/[\w.-]+\?v=[\w-]+)"/g)].map((m) => m[1]);
}

Deno.test("GET / serves the page under the strict CSP, with no inline script or style", async () => {
  await withService(async (service) => {
    const response = await service.request("/");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Content-Type"), "text/html; charset=utf-8");
    assert.equal(response.headers.get("Content-Security-Policy"), PAGE_CSP);
    assert.equal(
      PAGE_CSP,
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    const html = await response.text();
    const scripts = tags(html, "script");
    assert.equal(scripts.length, 1);
    assert.match(scripts[0], /^<script type="module" src="\/static\/app\.js\?v=[\w-]{16}">$/);
    assert.equal(html.match(/<script\b/g)?.length, 1, "no other script element");
    assert.equal(tags(html, "style").length, 0);
    assert.doesNotMatch(html, /\sstyle=|\son[a-z]+=|javascript:/i);
    for (const name of PAGE_FILES.filter((name) => name.endsWith(".js"))) {
      const code = await Deno.readTextFile(new URL(name, STATIC_DIR));
      assert.doesNotMatch(code, /innerHTML|eval\(|new Function|\.style\b|"style"/, name);
    }
  });
});

Deno.test("every link of the page is versioned, and its file is cached for good", async (t) => {
  await withService(async (service) => {
    const html = await (await service.request("/")).text();
    const found = links(html);
    const names = PAGE_FILES.filter((name) => name !== "index.html").map((n) => `/static/${n}`);
    assert.deepEqual(found.map((link) => link.replace(/\?.*/, "")).sort(), names.sort());
    for (const link of found) {
      await t.step(link, async () => {
        const response = await service.request(link);
        assert.equal(response.status, 200);
        const hash = link.replace(/.*\?v=/, "");
        assert.equal(response.headers.get("ETag"), `"${hash}"`);
        assert.equal(response.headers.get("Cache-Control"), "public, max-age=31536000, immutable");
        assert.equal(response.headers.get("Content-Security-Policy"), PAGE_CSP);
        assert.match(response.headers.get("Content-Type")!, /^text\/(javascript|css)/);
        const body = await response.text();
        for (const imported of body.matchAll(/from "(\.\/[\w.]+)([^"]*)"/g)) {
          assert.match(imported[2], /^\?v=[\w-]{16}$/, `${imported[1]} is versioned`);
        }
        const again = await service.request(link, { headers: { "If-None-Match": `"${hash}"` } });
        assert.equal(again.status, 304);
        const plain = await service.request(link.replace(/\?.*/, ""));
        assert.equal(plain.headers.get("Cache-Control"), "no-cache");
        await plain.body?.cancel();
      });
    }
    await t.step("and the page itself is revalidated", async () => {
      const response = await service.request("/");
      await response.body?.cancel();
      assert.equal(response.headers.get("Cache-Control"), "no-cache");
      const etag = response.headers.get("ETag")!;
      assert.equal(
        (await service.request("/", { headers: { "If-None-Match": etag } })).status,
        304,
      );
    });
  });
});

Deno.test("GET /static/ answers 404 for anything but the page's files", async () => {
  await withService(async (service) => {
    for (const path of ["/static/nope.js", "/static/index.html", "/static/..%2Fweb.ts"]) {
      const response = await service.request(path);
      assert.equal(response.status, 404, path);
      assert.equal((await response.json()).error.code, "not_found");
    }
  });
});

Deno.test("the dev-token button shows only where POST /v1/dev/token exists", async () => {
  await withService(async (service) => {
    const html = await (await service.request("/")).text();
    assert.match(html, /<body data-dev-token="off">/);
    const deps = {
      ...service.runtime.deps,
      config: { ...service.runtime.deps.config, devMode: true },
      auth: { ...service.runtime.deps.auth, sign: () => Promise.resolve("t") },
    } as AppDeps;
    const dev = await (await webRoutes(deps).request("/")).text();
    assert.match(dev, /<body data-dev-token="on">/);
  });
});

Deno.test("GET /docs serves the reference and the pinned Scalar bundle from this service", async (t) => {
  await withService(async (service) => {
    const response = await service.request("/docs");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Content-Security-Policy"), DOCS_CSP);
    assert.match(DOCS_CSP, /script-src 'self';/);
    const html = await response.text();
    assert.doesNotMatch(html, /https?:\/\//, "nothing from elsewhere");
    const scripts = tags(html, "script");
    assert.equal(scripts.length, 1);
    assert.match(scripts[0], /src="\/docs\/docs\.js\?v=[\w-]{16}"/);
    const bundleLink = scripts[0].match(/data-bundle="([^"]+)"/)![1];
    assert.match(bundleLink, new RegExp(`^${SCALAR_BUNDLE_PATH}\\?v=[\\w-]{16}$`));

    await t.step("the start-up script reads /openapi.json and nothing elsewhere", async () => {
      const code = await (await service.request(links(html)[0])).text();
      assert.match(code, /createApiReference\("#app"/);
      assert.match(code, /url: "\/openapi\.json"/);
      assert.match(code, /withDefaultFonts: false/);
      assert.doesNotMatch(code, /https?:\/\//);
    });

    await t.step(
      "the bundle is @scalar/api-reference 1.76.0's, gzipped, cached for good",
      async () => {
        const file = scalarBundleUrl();
        const pkg = JSON.parse(await Deno.readTextFile(new URL("../../package.json", file)));
        assert.equal(pkg.version, "1.76.0");
        const bytes = await Deno.readFile(file);
        const gz = await service.request(bundleLink, { headers: { "Accept-Encoding": "gzip" } });
        assert.equal(gz.headers.get("Content-Encoding"), "gzip");
        assert.equal(gz.headers.get("Cache-Control"), "public, max-age=31536000, immutable");
        const unzipped = gz.body!.pipeThrough(new DecompressionStream("gzip"));
        const served = new Uint8Array(await new Response(unzipped).arrayBuffer());
        assert.equal(served.length, bytes.length);
        assert.deepEqual(served.subarray(0, 4096), bytes.subarray(0, 4096));
        const plain = await service.request(bundleLink);
        assert.equal(plain.headers.get("Content-Encoding"), null);
        assert.equal((await plain.arrayBuffer()).byteLength, bytes.length);
        const etag = gz.headers.get("ETag")!;
        const again = await service.request(bundleLink, { headers: { "If-None-Match": etag } });
        assert.equal(again.status, 304);
      },
    );
  });
});

Deno.test("GET /docs answers 503 naming the fix when the Scalar package is missing", async () => {
  const app = new Hono();
  app.onError((error, c) => respond(c, toHttpError(error, getLogger(["imagejobs", "test"]))));
  app.route("/", docsRoutes({ bundle: new URL("file:///nonexistent/standalone.js") }));
  const response = await app.request("/docs");
  assert.equal(response.status, 503);
  assert.equal(response.headers.get("Retry-After"), "60");
  const body = await response.json();
  assert.equal(body.error.code, "unavailable");
  assert.match(body.error.message, /^Cannot serve the API reference: .*deno install/);
});

Deno.test("a worker-only process still serves /docs and the page, as every process does", async () => {
  await withService(async (service) => {
    const config = { ...service.runtime.deps.config, ROLE: "worker" as const };
    const app = createApp({ ...service.runtime.deps, config });
    const docs = await app.request("/docs");
    assert.equal(docs.status, 200);
    await docs.body?.cancel();
    const page = await app.request("/");
    assert.equal(page.status, 200);
    assert.match(page.headers.get("Content-Type") ?? "", /^text\/html/);
    await page.body?.cancel();
    assert.equal((await app.request("/v1/jobs")).status, 404, "no /v1 routes on a worker");
  });
});
