/** Job states, the contract's notification object and its helpers. */
import { z } from "zod";

/** Status of a job as the contract names it. */
export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "canceled";

/** Statuses after which nothing changes. */
export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(["succeeded", "failed", "canceled"]);

/** Message of the seed service for an invalid or expired token. */
export const SESSION_EXPIRED = "Session expired. Please log in again";

/** The error of a canceled job. */
export const JOB_CANCELED = "Job canceled";

/** Message of the seed service for a job that failed for an unexpected reason. */
export const PROCESSING_ERROR = "Error processing job";

/** The error of a job the image provider refused for its content policy. */
export const CONTENT_POLICY_ERROR =
  "The request was refused by the image provider's content policy";

/** The `error_code` of such a job. */
export const CONTENT_POLICY_CODE = "content_policy";

/** One image of a success: its media type and where to fetch it (with a read ticket). */
const imageLink = z.object({ mime_type: z.string(), url: z.string() });

/** An image of a success as `data.images` and `result.images` list it. */
export type ImageLink = z.infer<typeof imageLink>;

const resultData = z.object({
  image: z.string(),
  mime_type: z.string(),
  revised_prompt: z.string().optional(),
  images: z.array(imageLink).optional(),
});

const base = { id: z.string(), at: z.string() };

/** What the provider charged for the job (terminal events, once the provider answered). */
const usageSchema = z.object({ images: z.number().int().min(0), cost_usd: z.number().min(0) });

/** Schema of one notification, discriminated by its type. */
export const notificationSchema = z.discriminatedUnion("type", [
  z.object({ ...base, type: z.literal("queued"), success: z.literal(true) }),
  z.object({ ...base, type: z.literal("started"), success: z.literal(true) }),
  z.object({
    ...base,
    type: z.literal("succeeded"),
    success: z.literal(true),
    data: resultData,
    usage: usageSchema.optional(),
  }),
  z.object({
    ...base,
    type: z.literal("failed"),
    success: z.literal(false),
    error: z.string(),
    usage: usageSchema.optional(),
    error_code: z.string().optional(),
  }),
  z.object({ ...base, type: z.literal("canceled"), success: z.literal(false), error: z.string() }),
]);

/** The notification object sent to clients: a superset of the seed's `{success, data, error}`. */
export type Notification = z.infer<typeof notificationSchema>;

/** A notification without its job id and time, as a producer describes it. */
export type NotificationBody = Notification extends infer N
  ? N extends Notification ? Omit<N, "id" | "at"> : never
  : never;

/** Event type of a notification. */
export type EventType = Notification["type"];

/** A notification with the id under which the job's event log stores it. */
export interface StoredEvent {
  eventId: string;
  notification: Notification;
  /** The notification as JSON, once some subscriber needed it (see notificationJson). */
  json?: string;
  /** The JSON with read tickets on its image links, for the last ticket asked for (see linkedJson). */
  linked?: { ticket: string; json: string };
}

/** The event's notification as JSON: serialised once, then shared by every subscriber that sends it. */
export function notificationJson(event: StoredEvent): string {
  return event.json ??= JSON.stringify(event.notification);
}

/** An image link as stored: no query (`/v1/jobs/<id>/images/<k>`), in a success's `images`. */
const BARE_LINK = /("url":"\/v1\/jobs\/[^"?]+\/images\/\d+)"/g;

/**
 * The event's JSON with `ticket` on each of its image links. A success is stored with bare links (a
 * ticket made when the job ended would expire 15 minutes later, in every replay and webhook retry
 * after that, and would cost Redis 300 bytes an image); each delivery puts a current one on them. Made
 * once per event and ticket (tickets are shared per job for a minute), and only the tail after the
 * image is searched. Links stored with a ticket (before this change) are left as they are.
 */
export function linkedJson(event: StoredEvent, ticket: string | undefined): string {
  const json = notificationJson(event);
  if (ticket === undefined || event.notification.type !== "succeeded") return json;
  if (event.linked?.ticket === ticket) return event.linked.json;
  const at = json.lastIndexOf('"images":[');
  if (at < 0) return json;
  const query = `?ticket=${encodeURIComponent(ticket)}`;
  const linked = json.slice(0, at) + json.slice(at).replace(BARE_LINK, `$1${query}"`);
  event.linked = { ticket, json: linked };
  return linked;
}

/** Returns true when the event type ends the job. */
export function isTerminal(type: string): boolean {
  return TERMINAL_STATUSES.has(type);
}

/** The links of a job's images, `/v1/jobs/<id>/images/<k>`, with the read ticket when there is one. */
export function imageLinks(jobId: string, mimeTypes: string[], ticket?: string): ImageLink[] {
  const base = `/v1/jobs/${encodeURIComponent(jobId)}/images/`;
  const query = ticket ? `?ticket=${encodeURIComponent(ticket)}` : "";
  return mimeTypes.map((mime_type, k) => ({ mime_type, url: `${base}${k}${query}` }));
}

/** Builds a data URL from base64 bytes and their media type. */
export function dataUrl(mimeType: string, base64: string): string {
  return `data:${mimeType};base64,${base64}`;
}

const EMPTY_IMAGE = '"image":""';

/** A success as stored (its image left empty) with its image (base64) put back, and so its JSON. */
export function withImage(event: StoredEvent, base64: string): StoredEvent {
  const n = event.notification;
  if (n.type !== "succeeded") return event;
  const notification = { ...n, data: { ...n.data, image: dataUrl(n.data.mime_type, base64) } };
  const json = event.json === undefined
    ? undefined
    : withImageJson(event.json, n.data.mime_type, base64);
  return { eventId: event.eventId, notification, json };
}

/**
 * A stored success's JSON (its image left empty) with the image put in as a data URL, spliced rather
 * than serialised again (base64 needs no escaping); undefined unless the empty image is there once.
 */
export function withImageJson(json: string, mimeType: string, base64: string): string | undefined {
  const at = json.indexOf(EMPTY_IMAGE);
  if (at < 0 || json.includes(EMPTY_IMAGE, at + 1)) return undefined;
  const head = JSON.stringify(`data:${mimeType};base64,`).slice(0, -1);
  return `${json.slice(0, at)}"image":${head}${base64}"${json.slice(at + EMPTY_IMAGE.length)}`;
}

const PLAIN = /^\d+$/;

/**
 * Compares two stream ids (`<ms>-<seq>`), returning a negative number, zero or a positive number.
 * A bare number is read as `<n>-0`.
 */
export function compareEventIds(a: string, b: string): number {
  // A job's event ids are small bare numbers: compared as numbers, without splitting or BigInt.
  if (a.length < 16 && b.length < 16 && PLAIN.test(a) && PLAIN.test(b)) return Math.sign(+a - +b);
  const [am, as = "0"] = a.split("-");
  const [bm, bs = "0"] = b.split("-");
  const ms = BigInt(am) - BigInt(bm);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

/** True when the string is a well-formed stream id such as `1700000000000-0` or `17`. */
export function isEventId(value: string): boolean {
  return /^\d{1,20}(-\d{1,20})?$/.test(value);
}
