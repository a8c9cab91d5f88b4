/**
 * `GET /` and `/static/*`: the web page (`routes/static/`: one HTML file, a few ES modules, one
 * stylesheet; no framework, no build step), under a strict Content-Security-Policy.
 */
import { Hono } from "hono";
import type { AppDeps, AppEnv } from "./deps.ts";
import { type Asset, loadFiles, once, serveAsset } from "./assets.ts";

/** The page's policy: its own scripts and styles only, no inline code, images also as blobs. */
export const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/**
 * The page's policy when the image routes redirect to the image store (`IMAGE_STORE_REDIRECT=1`): its
 * images, and the fetches that follow those redirects, may come from the store's origin too.
 */
export function pageCsp(storeOrigin?: string): string {
  if (!storeOrigin) return PAGE_CSP;
  return PAGE_CSP.replace("img-src 'self'", `img-src 'self' ${storeOrigin}`)
    .replace("connect-src 'self'", `connect-src 'self' ${storeOrigin}`);
}

/** The page's files, each after the files it links to (their links get the linked file's hash). */
export const PAGE_FILES = [
  "api.js",
  "feed.js",
  "card_view.js",
  "cards.js",
  "history.js",
  "app.js",
  "app.css",
  "index.html",
] as const;

/** The folder of the page's files (and of the API reference page's own two). */
export const STATIC_DIR = new URL("./static/", import.meta.url);

/** The page's assets by name; `devToken` shows the dev-token button. */
export function loadPage(
  { devToken, dir = STATIC_DIR }: { devToken: boolean; dir?: URL },
): Promise<Map<string, Asset>> {
  const flag = `<body data-dev-token="${devToken ? "on" : "off"}">`;
  return loadFiles(PAGE_FILES, {
    dir,
    base: "/static/",
    edit: (name, text) => name === "index.html" ? text.replace("<body>", flag) : text,
  });
}

/** The web page routes. */
export function webRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  // The dev-token button only where `POST /v1/dev/token` exists (routes/dev.ts's condition).
  const devToken = Boolean(deps.config.devMode && deps.auth.sign);
  const page = once(() => loadPage({ devToken }));
  const headers = { "Content-Security-Policy": pageCsp(deps.images?.store.origin) };
  app.get("/", async (c) => serveAsset(c, (await page()).get("index.html")!, headers));
  app.get("/static/:name", async (c) => {
    const name = c.req.param("name");
    const asset = name === "index.html" ? undefined : (await page()).get(name);
    if (!asset) return c.notFound();
    return serveAsset(c, asset, headers);
  });
  app.get("/favicon.ico", (c) => c.body(null, 204));
  return app;
}
