/** The body of an xAI images request: a generation, or an edit of 1 to 3 reference images. */
/** What the worker asks a provider for (grok.ts exports it too). */
export interface ImageRequest {
  prompt: string;
  model?: string;
  aspectRatio?: string;
  /** Images from this one request (1 to 10; absent: 1). */
  n?: number;
  resolution?: "1k" | "2k";
  quality?: "low" | "medium" | "high";
  /** Images to edit (1 to 3): `data:` URIs or `https://` URLs; absent or empty: a generation. */
  references?: string[];
}

/** Where a request goes and what it sends (JSON). */
export interface GrokCall {
  /** `images/generations` or `images/edits`, relative to the API base. */
  path: string;
  body: Record<string, unknown>;
}

/**
 * Builds the JSON xAI takes. With references it is an edit (`POST /images/edits`): one reference goes
 * as `image: {url, type: "image_url"}`, two or three as `images: [{url, type: "image_url"}, …]` (xAI
 * takes one or the other); each `url` is a `data:` URI or a public `https://` URL that xAI fetches.
 * `n`, `resolution`, `quality` and `aspect_ratio` are sent only when the job set them.
 */
export function grokCall(
  request: ImageRequest,
  defaults: { model: string; responseFormat: string },
): GrokCall {
  const body: Record<string, unknown> = {
    model: request.model ?? defaults.model,
    prompt: request.prompt,
    n: request.n ?? 1,
    response_format: defaults.responseFormat,
  };
  if (request.aspectRatio !== undefined) body.aspect_ratio = request.aspectRatio;
  if (request.resolution !== undefined) body.resolution = request.resolution;
  if (request.quality !== undefined) body.quality = request.quality;
  const references = request.references ?? [];
  if (references.length === 0) return { path: "images/generations", body };
  const images = references.map((url) => ({ url, type: "image_url" }));
  if (images.length === 1) body.image = images[0];
  else body.images = images;
  return { path: "images/edits", body };
}
