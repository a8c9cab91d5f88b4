/** A submit's reference images: their share of the body's size, and `job:` references checked. */
import type { AppDeps } from "./deps.ts";
import { HttpError, httpErrors } from "../lib/errors.ts";
import {
  jobReference,
  MAX_DATA_URL_CHARS,
  MAX_REFERENCES,
  type Reference,
} from "../lib/provider/references.ts";

/** The largest submit body without its reference images' `data:` URLs. */
export const MAX_BODY_BYTES = 64 * 1024;

/** The largest submit body: 64 KiB plus three `data:` URLs of 10 MiB each. */
export const MAX_REQUEST_BYTES = MAX_BODY_BYTES + MAX_REFERENCES * MAX_DATA_URL_CHARS;

/**
 * The body's size check (413): its reference images count toward the request's size, each as
 * its `data:` URL (at most 10 MiB decoded, 3 of them), and everything else toward 64 KiB.
 */
export function checkSubmitSize(value: unknown, _text: string, bytes: number): void {
  const images = (value as { images?: unknown }).images;
  let exempt = 0;
  if (Array.isArray(images)) {
    for (const image of images.slice(0, MAX_REFERENCES)) {
      if (typeof image === "string" && image.startsWith("data:")) {
        exempt += Math.min(image.length, MAX_DATA_URL_CHARS);
      }
    }
  }
  if (bytes - exempt > MAX_BODY_BYTES) {
    throw httpErrors.tooLarge(
      "Cannot accept the request: the body is over 64 KiB besides its reference images",
    );
  }
}

/** A 422 about the `i`-th reference image. */
function refuse(i: number, state: string): HttpError {
  return new HttpError(422, "invalid_request", `Cannot accept the request: images.${i} ${state}`);
}

/**
 * The references as the job stores them: `data:` and `https://` URLs as checked, and each `job:`
 * reference as `job:<id>#<index>` once it names an image of one of the owner's succeeded jobs (422
 * otherwise, before any job is made: another owner's job looks like no job at all).
 */
export async function storedReferences(
  deps: AppDeps,
  owner: string,
  references: Reference[] | undefined,
): Promise<string[] | undefined> {
  if (references === undefined) return undefined;
  return await Promise.all(references.map(async (reference, i) => {
    if (reference.kind !== "job") return reference.url;
    const { id, index } = reference;
    const job = await deps.broker.get(id);
    if (!job || job.owner !== owner || !job.owner) {
      throw refuse(i, `names no job of yours: ${id}`);
    }
    if (job.status !== "succeeded") throw refuse(i, `names a job that has not succeeded: ${id}`);
    if (index >= (job.imageCount ?? 0)) throw refuse(i, `names an image job ${id} does not have`);
    return jobReference(id, index);
  }));
}
