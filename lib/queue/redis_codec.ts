/** Decoding of the Redis broker's replies: stream entries, job hashes and stored notifications. */
import { z } from "zod";
import {
  type JobStatus,
  type Notification,
  type NotificationBody,
  notificationSchema,
} from "../live/notifications.ts";
import { type RedisReply, replyText } from "../redis/types.ts";
import { RECORD_FIELDS, REFERENCE_FIELDS } from "./scripts.ts";
import type {
  Delivery,
  ImageObject,
  ImageQuality,
  ImageResolution,
  JobRecord,
  NewJob,
} from "./types.ts";

/** A jobs-stream entry: `Id`, and `Token` and `Prompt` when another service added it. */
const entrySchema = z.object({
  Id: z.string().min(1).max(256),
  Token: z.string().max(16_384).optional(),
  Prompt: z.string().max(100_000).optional(),
});

/** The job hash's field of an image stored as raw bytes. */
export const IMAGE_BYTES = "img";
/** The job hash's field of an image stored as base64 text (over REST, and in jobs stored before). */
export const IMAGE_BASE64 = "image";

/** The job hash's fields of the `index`-th image (index ≥ 1) as bytes, and as base64 text. */
export function imageFields(index: number): [string, string] {
  return [`${IMAGE_BYTES}:${index}`, `${IMAGE_BASE64}:${index}`];
}

/** True for the fields a job's record and events never need: the images after the first. */
function bulky(name: string): boolean {
  return name.startsWith(`${IMAGE_BYTES}:`) || name.startsWith(`${IMAGE_BASE64}:`);
}

/**
 * CREATE's ARGV of a job's optional parameters: the count k of field-value pairs of the job hash,
 * the pairs (n, resolution, quality, the references' count), then the count r of reference images
 * and the references (written to the job's references hash, which then ends CREATE's KEYS).
 */
export function jobParams(job: NewJob): string[] {
  const pairs: string[] = [];
  if (job.n !== undefined) pairs.push("n", String(job.n));
  if (job.resolution !== undefined) pairs.push("res", job.resolution);
  if (job.quality !== undefined) pairs.push("qual", job.quality);
  const references = (job.references ?? []).slice(0, REFERENCE_FIELDS.length);
  if (references.length > 0) pairs.push("nref", String(references.length));
  return [String(pairs.length / 2), ...pairs, String(references.length), ...references];
}

/** A job's stored image as base64 (encoded once here), from its two possible fields; null when none. */
export function imageOf(
  bytes: RedisReply | undefined,
  base64: RedisReply | undefined,
): string | null {
  if (bytes instanceof Uint8Array && bytes.byteLength > 0) return bytes.toBase64();
  const text = replyText(base64);
  return text === "" ? null : text;
}

/**
 * Reads a flat `[field, value, …]` reply taken as bytes (a whole job hash) as text fields, and its
 * image, base64, when it has one.
 */
export function jobFields(
  reply: RedisReply,
): { fields: Record<string, string>; image: string | null } {
  const fields: Record<string, string> = {};
  let bytes: RedisReply | undefined;
  let base64: RedisReply | undefined;
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const name = replyText(reply[i]);
      if (name === IMAGE_BYTES) bytes = reply[i + 1];
      else if (name === IMAGE_BASE64) base64 = reply[i + 1];
      else if (!bulky(name)) fields[name] = replyText(reply[i + 1]);
    }
  }
  return { fields, image: imageOf(bytes, base64) };
}

/** Turns a flat `[field, value, …]` reply into an object. */
export function fieldsToObject(fields: RedisReply): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(fields)) return out;
  for (let i = 0; i + 1 < fields.length; i += 2) out[String(fields[i])] = String(fields[i + 1]);
  return out;
}

/** Reads a stream entry, held by `consumer`, as a delivery; a malformed entry gets an empty job id. */
export function toDelivery(
  entry: RedisReply,
  consumer: string,
  deliveries = 1,
  partition?: number,
): Delivery {
  const [entryId, fields] = entry as [string, RedisReply];
  const from = partition === undefined ? {} : { partition };
  const parsed = entrySchema.safeParse(fieldsToObject(fields));
  if (!parsed.success) return { entryId, jobId: "", deliveries, consumer, ...from };
  const { Id, Token, Prompt } = parsed.data;
  if (Token === undefined) return { entryId, jobId: Id, deliveries, consumer, ...from };
  const seed = { token: Token, prompt: Prompt ?? "" };
  return { entryId, jobId: Id, deliveries, consumer, seed, ...from };
}

/** Reads HMGET values (RECORD_FIELDS order) as a job record; empty optional fields are left out. */
export function toRecord(id: string, values: RedisReply[]): JobRecord {
  const r = Object.fromEntries(RECORD_FIELDS.map((f, i) => [f, replyText(values[i])])) as Record<
    (typeof RECORD_FIELDS)[number],
    string
  >;
  const record: JobRecord = {
    id,
    owner: r.owner,
    status: r.status as JobStatus,
    prompt: r.prompt,
    createdAt: r.created,
    updatedAt: r.updated,
    attempts: Number(r.attempts) || 0,
  };
  const optional = { model: r.model, aspectRatio: r.aspect, error: r.error, mimeType: r.mime };
  for (const [name, value] of Object.entries({ ...optional, revisedPrompt: r.revised })) {
    if (value) Object.assign(record, { [name]: value });
  }
  if (r.uimg !== "") {
    record.usage = { images: Number(r.uimg) || 0, costUsdTicks: Number(r.uticks) || 0 };
  }
  if (r.wh) record.webhook = r.wh;
  if (r.wh && r.whe) record.webhookEvents = r.whe.split(" ") as JobRecord["webhookEvents"];
  if (r.n) record.n = Number(r.n);
  if (r.res) record.resolution = r.res as ImageResolution;
  if (r.qual) record.quality = r.qual as ImageQuality;
  if (r.nref) record.referenceCount = Number(r.nref);
  if (r.ecode) record.errorCode = r.ecode;
  if (record.status === "succeeded" && r.mime) {
    // Jobs stored before several images were possible have one, and no count.
    record.mimeTypes = r.mimes ? r.mimes.split(" ") : [r.mime];
    record.imageCount = Number(r.count) || record.mimeTypes.length;
    if (r.objs) record.objects = storedObjects(r.objs, r.osz, record.mimeTypes);
  }
  return record;
}

/** The image store's objects of a job (`objs`: keys, `osz`: sizes, space-separated, in order). */
function storedObjects(keys: string, sizes: string, mimeTypes: string[]): ImageObject[] {
  const size = sizes.split(" ");
  return keys.split(" ").map((key, k) => ({
    key,
    mimeType: mimeTypes[k] ?? mimeTypes[0],
    size: Number(size[k]) || 0,
  }));
}

/** The FINISH field-value pairs that record a success's objects (keys and sizes) instead of bytes. */
export function objectFields(objects: ImageObject[]): string[] {
  return ["objs", objects.map((o) => o.key).join(" "), "osz", objects.map((o) => o.size).join(" ")];
}

/** Serialises a notification for storage, stamping its job id and time. */
export function notification(jobId: string, body: NotificationBody): string {
  return JSON.stringify({ id: jobId, ...body, at: new Date().toISOString() });
}

/** Parses a stored notification, or null when it does not validate. */
export function parseNotification(json: string): Notification | null {
  try {
    const parsed = notificationSchema.safeParse(JSON.parse(json));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
