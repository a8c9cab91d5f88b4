/** Helpers the HTTP routes share: who is calling, loading their job, and the job's public shape. */
import type { Context } from "hono";
import type { AppDeps } from "./deps.ts";
import { bearerToken } from "../lib/auth/jwt.ts";
import { httpErrors } from "../lib/errors.ts";
import { usageBody } from "../lib/pace/usage.ts";
import {
  dataUrl,
  imageLinks,
  type JobStatus,
  PROCESSING_ERROR,
} from "../lib/live/notifications.ts";
import { JOB_ID, type JobRecord, type JobView } from "../lib/queue/types.ts";
import type { Job } from "./responses.ts";
import { resumeAfter } from "./schemas.ts";

export { JOB_ID };

/** Random bytes drawn 4 KiB at a time: one call into the runtime per 256 job ids, not one per id. */
const randomPool = new Uint8Array(4096);
let randomUsed = randomPool.length;

/** Makes an unguessable job id: 128 random bits (each pool byte used once), base64url. */
export function newJobId(): string {
  if (randomUsed === randomPool.length) {
    crypto.getRandomValues(randomPool);
    randomUsed = 0;
  }
  const bytes = randomPool.subarray(randomUsed, randomUsed += 16);
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

/** Verifies the bearer token (or a fallback token from the seed body) and returns the owner. */
export async function authenticate(
  c: Context,
  deps: AppDeps,
  fallbackToken?: string,
): Promise<string> {
  const header = c.req.header("Authorization");
  const token = header ? bearerToken(header) : fallbackToken ?? null;
  if (!token) throw httpErrors.unauthorized();
  return (await deps.auth.verify(token)).sub;
}

/** Loads a job the owner may see; any other answers 404 exactly like an unknown id. */
export async function ownedJob(
  deps: AppDeps,
  owner: string,
  id: string,
  options: { image?: boolean } = {},
): Promise<JobView> {
  if (!JOB_ID.test(id)) throw httpErrors.notFound();
  const job = await deps.broker.get(id, options);
  if (!job || !job.owner || job.owner !== owner) throw httpErrors.notFound();
  return job;
}

/** Who may read one job's events: a bearer owner, or a ticket scoped to that job. */
export async function authenticateReader(c: Context, deps: AppDeps, jobId: string) {
  const ticket = c.req.query("ticket");
  if (ticket && !c.req.header("Authorization")) {
    const claims = await deps.tickets.verify(ticket);
    if (claims.jobId !== jobId) throw httpErrors.notFound();
    return claims.owner;
  }
  return await authenticate(c, deps);
}

/** Reads `Last-Event-ID` (header) or `last_event_id` (query), checking its form. */
export function lastEventId(c: Context): string | undefined {
  const value = c.req.header("Last-Event-ID") ?? c.req.query("last_event_id");
  if (value === undefined || value === "") return undefined;
  if (!resumeAfter.safeParse(value).success) {
    throw httpErrors.invalid("Cannot resume: Last-Event-ID is not an event id");
  }
  return value;
}

/** The job's links, with a fresh read-only ticket for browsers; `image` only when asked for. */
export async function jobUrls(
  deps: AppDeps,
  job: JobRecord,
  { image, issued }: { image: boolean; issued?: string },
) {
  const id = encodeURIComponent(job.id);
  const ticket = encodeURIComponent(issued ?? await deps.tickets.issue(job.owner, job.id));
  const urls = {
    self: `/v1/jobs/${id}`,
    events: `/v1/jobs/${id}/events?ticket=${ticket}`,
    websocket: `/v1/ws?ticket=${ticket}`,
  };
  return image ? { ...urls, image: `/v1/jobs/${id}/image?ticket=${ticket}` } : urls;
}

/**
 * The job document `GET /v1/jobs/{id}` answers: the public status, its links with fresh tickets
 * (`image` once succeeded) and, while queued, its queue position.
 */
export async function describeJob(
  deps: AppDeps,
  job: JobView,
  { listed = false, position = true }: { listed?: boolean; position?: boolean } = {},
): Promise<Job> {
  const issued = await deps.tickets.issue(job.owner, job.id);
  const urls = await jobUrls(deps, job, { image: job.status === "succeeded", issued });
  const shown = { ...presentJob(job, issued), urls };
  if (listed && shown.status === "succeeded" && job.mimeType) {
    // A listing's item: the job document whose result leaves the inline image out (`ListedJob`).
    return { ...shown, result: listedResult(job, issued) } as Job;
  }
  if (shown.status !== "queued" || !position) return shown;
  const ahead = await deps.broker.queuePosition(job.id);
  return ahead === null ? shown : { ...shown, queue_position: ahead };
}

/** The fields every job document has, in the contract's order. */
function jobFields<S extends JobStatus>(job: JobView, status: S) {
  return {
    id: job.id,
    status,
    prompt: job.prompt,
    model: job.model,
    aspect_ratio: job.aspectRatio,
    n: job.n,
    resolution: job.resolution,
    quality: job.quality,
    created_at: job.createdAt,
    updated_at: job.updatedAt,
    attempts: job.attempts,
    usage: job.usage && usageBody(job.usage),
  };
}

/** A succeeded job's `result` without its inline image: media type, revised prompt, every image. */
export function listedResult(job: JobRecord, ticket?: string) {
  const mimeTypes = job.mimeTypes ?? (job.mimeType ? [job.mimeType] : []);
  return {
    mime_type: job.mimeType ?? "",
    revised_prompt: job.revisedPrompt,
    images: imageLinks(job.id, mimeTypes, ticket),
  };
}

/**
 * The public status document of a job: `result` only when succeeded (its `images` links carry
 * `ticket` when given), `error` only when failed.
 */
export function presentJob(job: JobView, ticket?: string): Job {
  switch (job.status) {
    case "succeeded": {
      const { image, mimeType } = job;
      if (!image || !mimeType) return jobFields(job, job.status);
      const result = { image: dataUrl(mimeType, image), ...listedResult(job, ticket) };
      return { ...jobFields(job, job.status), result };
    }
    case "failed": {
      const code = job.errorCode ? { error_code: job.errorCode } : {};
      return { ...jobFields(job, job.status), error: job.error ?? PROCESSING_ERROR, ...code };
    }
    default:
      return jobFields(job, job.status);
  }
}
