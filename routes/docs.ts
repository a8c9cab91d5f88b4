/**
 * `GET /docs`: the API reference (Scalar), rendered in the browser from `/openapi.json` by the pinned
 * @scalar/api-reference bundle that this service serves itself: no CDN, no network beyond the service.
 */
// Type-only: keeps the package in the module graph, so `deno install`, `deno cache main.ts` and
// `deno check` fetch it; its browser bundle is read from the package's files, never run here.
import type {} from "@scalar/api-reference";
import { Hono } from "hono";
import { HttpError } from "../lib/errors.ts";
import { type Asset, loadFiles, makeAsset, once, serveAsset } from "./assets.ts";

/** The path of the Scalar bundle this service serves. */
export const SCALAR_BUNDLE_PATH = "/docs/scalar.js";

/**
 * The policy of `/docs`: scripts from the service only (no inline script, no eval); inline styles
 * allowed, because the bundle injects `<style>` elements and `style` attributes that carry no nonce.
 */
export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const DOCS_DIR = new URL("./static/", import.meta.url);

/** Where the installed package's standalone browser bundle is (`dist/browser/standalone.js`). */
export function scalarBundleUrl(): URL {
  return new URL("./browser/standalone.js", import.meta.resolve("@scalar/api-reference"));
}

/** Reads the bundle (gzipped once for the wire), then the page and its start-up script. */
async function loadDocs(bundleFile: URL, dir: URL): Promise<Map<string, Asset>> {
  let bundle: Asset;
  try {
    bundle = await makeAsset("scalar.js", await Deno.readFile(bundleFile), { gzip: true });
  } catch (error) {
    throw new HttpError(
      503,
      "unavailable",
      "Cannot serve the API reference: @scalar/api-reference is not installed (run deno install)",
      { cause: error, headers: { "Retry-After": "60" } },
    );
  }
  const known = new Map([[SCALAR_BUNDLE_PATH, bundle]]);
  const files = await loadFiles(["docs.js", "docs.html"], { dir, base: "/docs/", known });
  return new Map([["scalar.js", bundle], ...files]);
}

/** The reference page (`/docs`), its start-up script and the bundle. */
export function docsRoutes(
  { bundle = scalarBundleUrl(), dir = DOCS_DIR }: { bundle?: URL; dir?: URL } = {},
): Hono {
  const app = new Hono();
  const assets = once(() => loadDocs(bundle, dir));
  const headers = { "Content-Security-Policy": DOCS_CSP };
  app.get("/docs", async (c) => serveAsset(c, (await assets()).get("docs.html")!, headers));
  app.get("/docs/:name{(docs|scalar)\\.js}", async (c) => {
    const asset = (await assets()).get(c.req.param("name"))!;
    return serveAsset(c, asset, headers);
  });
  return app;
}
