/**
 * What a job asks the provider for (its parameters, its reference images resolved to URLs xAI takes),
 * and how the provider's answer becomes the job's outcome (every image, or a refusal).
 */
import { isTransient, PermanentError, RetryableError } from "../lib/errors.ts";
import {
  CONTENT_POLICY_CODE,
  CONTENT_POLICY_ERROR,
  dataUrl,
  PROCESSING_ERROR,
} from "../lib/live/notifications.ts";
import type { GeneratedImage, ImageRequest } from "../lib/provider/grok.ts";
import { parseReference } from "../lib/provider/references.ts";
import { ContentPolicyError } from "../lib/provider/refusal.ts";
import type { Broker, JobRecord, Outcome } from "../lib/queue/types.ts";

/**
 * The provider request of a job. A `job:<id>#<k>` reference becomes that image as a data URI, read
 * from the broker now (so no public URL of this service is needed); it must still be an image of a
 * succeeded job of the same owner, or the job fails for good.
 */
export async function providerRequest(job: JobRecord, broker: Broker): Promise<ImageRequest> {
  const { prompt, model, aspectRatio, n, resolution, quality } = job;
  const request: ImageRequest = { prompt, model, aspectRatio, n, resolution, quality };
  if (!job.referenceCount) return request;
  try {
    return { ...request, references: await references(job, broker) };
  } catch (error) {
    // The broker away for a moment is worth another attempt; anything else is not.
    if (!isTransient(error)) throw error;
    throw new RetryableError("Cannot read the reference images: the broker is unreachable", {
      cause: error,
    });
  }
}

/** The job's reference images as the URLs sent to xAI. */
async function references(job: JobRecord, broker: Broker): Promise<string[]> {
  const stored = await broker.references(job.id);
  if (stored.length !== job.referenceCount) {
    throw new PermanentError("Cannot edit the images: the job's reference images are gone");
  }
  return await Promise.all(stored.map((text) => resolve(text, job.owner, broker)));
}

/** A stored reference as the URL sent to xAI. */
async function resolve(text: string, owner: string, broker: Broker): Promise<string> {
  const reference = parseReference(text);
  if (typeof reference === "string") {
    throw new PermanentError(`Cannot edit the images: a stored reference ${reference}`);
  }
  if (reference.kind !== "job") return reference.url;
  const { id, index } = reference;
  const source = await broker.get(id);
  const mime = source?.mimeTypes?.[index];
  if (!source || source.owner !== owner || source.status !== "succeeded" || !mime) {
    throw new PermanentError(`Cannot edit the images: job ${id} has no image ${index} any more`);
  }
  const base64 = await broker.imageAt(id, index);
  if (base64 === null) {
    throw new PermanentError(`Cannot edit the images: job ${id} has no image ${index} any more`);
  }
  return dataUrl(mime, base64);
}

/** The success of a provider answer: every image, the first as the fast path. */
export function succeeded(image: GeneratedImage): Outcome {
  const more = (image.more ?? []).map((extra) => ({
    image: Uint8Array.fromBase64(extra.base64),
    mimeType: extra.mimeType,
  }));
  return {
    type: "succeeded",
    // Stored as bytes: a quarter smaller than base64, and written to Redis without re-encoding.
    image: Uint8Array.fromBase64(image.base64),
    base64: image.base64,
    mimeType: image.mimeType,
    revisedPrompt: image.revisedPrompt,
    ...(more.length > 0 ? { more } : {}),
  };
}

/** The failure a client sees: a refusal says so (with its code), anything else the seed's message. */
export function failure(error: unknown): Outcome {
  if (error instanceof ContentPolicyError) {
    return { type: "failed", error: CONTENT_POLICY_ERROR, errorCode: CONTENT_POLICY_CODE };
  }
  return { type: "failed", error: PROCESSING_ERROR };
}
