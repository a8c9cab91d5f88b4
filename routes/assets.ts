/** Static files served by the service itself (the page, the API reference bundle): bytes, ETag, caching. */
import type { Context } from "hono";

/** One file ready to serve. */
export interface Asset {
  body: Uint8Array<ArrayBuffer>;
  type: string;
  /** A short content hash: the ETag and the `?v=` of versioned links. */
  hash: string;
  /** The body gzipped, for large files (made on first use). */
  gzip?: Uint8Array<ArrayBuffer>;
}

/** Media types of the extensions served. */
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  png: "image/png",
};

/** A year: versioned links never change, so browsers may keep them that long. */
const IMMUTABLE = "public, max-age=31536000, immutable";

/** The first 16 characters of the base64url SHA-256 of `bytes`. */
export async function contentHash(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return digest.toBase64({ alphabet: "base64url", omitPadding: true }).slice(0, 16);
}

/** Builds an asset from its bytes, its type taken from `name`'s extension. */
export async function makeAsset(
  name: string,
  body: Uint8Array<ArrayBuffer>,
  { gzip = false }: { gzip?: boolean } = {},
): Promise<Asset> {
  const type = TYPES[name.slice(name.lastIndexOf(".") + 1)] ?? "application/octet-stream";
  const asset: Asset = { body, type, hash: await contentHash(body) };
  if (gzip) {
    const stream = new Blob([body]).stream().pipeThrough(new CompressionStream("gzip"));
    asset.gzip = new Uint8Array(await new Response(stream).arrayBuffer());
  }
  return asset;
}

/** Options of loadFiles. */
export interface LoadOptions {
  /** The folder of the files. */
  dir: URL;
  /** The URL path the files are served under, such as `/static/`. */
  base: string;
  /** Assets served elsewhere that the files may link to, by URL path. */
  known?: Map<string, Asset>;
  /** Changes a file's text before it is hashed. */
  edit?: (name: string, text: string) => string;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Reads text files in the order given; each quoted link to an earlier file (`"/static/a.js"` or
 * `"./a.js"`) or to a `known` asset gains `?v=<hash>`, so that every link may be cached for good.
 */
export async function loadFiles(
  names: readonly string[],
  { dir, base, known = new Map(), edit = (_name, text) => text }: LoadOptions,
): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>();
  const paths = new Map(known);
  for (const name of names) {
    let text = edit(name, await Deno.readTextFile(new URL(name, dir)));
    for (const [path, asset] of paths) {
      const relative = path.startsWith(base) ? `|\\./${escapeRegExp(path.slice(base.length))}` : "";
      const link = new RegExp(`(["'])(${escapeRegExp(path)}${relative})\\1`, "g");
      text = text.replace(link, `$1$2?v=${asset.hash}$1`);
    }
    const asset = await makeAsset(name, new TextEncoder().encode(text));
    assets.set(name, asset);
    paths.set(base + name, asset);
  }
  return assets;
}

/** Runs `load` once, on first use; a failed load is tried again next time. */
export function once<T>(load: () => Promise<T>): () => Promise<T> {
  let loading: Promise<T> | null = null;
  return () => {
    loading ??= load().catch((error) => {
      loading = null;
      throw error;
    });
    return loading;
  };
}

/**
 * Answers with the asset: `304` when `If-None-Match` names it, long-lived caching when the request
 * asks for its current version (`?v=<hash>`), otherwise revalidation on every use.
 */
export function serveAsset(c: Context, asset: Asset, headers: Record<string, string> = {}) {
  const etag = `"${asset.hash}"`;
  const cache = c.req.query("v") === asset.hash ? IMMUTABLE : "no-cache";
  const common = { ETag: etag, "Cache-Control": cache, Vary: "Accept-Encoding", ...headers };
  const match = c.req.header("If-None-Match")?.split(",").map((tag) => tag.trim());
  if (match?.includes(etag) || match?.includes(`W/${etag}`)) {
    return c.body(null, 304, common);
  }
  const gzip = asset.gzip && /\bgzip\b/.test(c.req.header("Accept-Encoding") ?? "");
  const body = gzip ? asset.gzip! : asset.body;
  const encoding: Record<string, string> = gzip ? { "Content-Encoding": "gzip" } : {};
  return c.body(body, 200, { ...common, ...encoding, "Content-Type": asset.type });
}
