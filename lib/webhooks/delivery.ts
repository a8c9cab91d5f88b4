/** One attempt of one webhook delivery, and what it leaves in the outbox. */
import type { Logger } from "@logtape/logtape";
import { linkedJson, type StoredEvent } from "../live/notifications.ts";
import { createDeadline, parseRetryAfter } from "../provider/images.ts";
import type { Broker, JobRecord, WebhookTask } from "../queue/types.ts";
import { nextWebhookAttempt, type WebhookBackoffOptions } from "./backoff.ts";
import { checkWebhookTarget, type ResolveDns } from "./egress.ts";
import { webhookId, type WebhookSigner } from "./signing.ts";
import type { SendWebhook } from "./transport.ts";

/**
 * What an attempt ended in: `delivered` (2xx), `gone` (410: the job's deliveries stopped), `retried`
 * (scheduled again), `gave_up` (retried long enough), `refused` (the target is not allowed) or
 * `dropped` (the job, its webhook or the event no longer exists).
 */
export type DeliveryOutcome = "delivered" | "gone" | "retried" | "gave_up" | "refused" | "dropped";

/** What an attempt needs. */
export interface DeliveryDeps {
  broker: Pick<Broker, "webhooks" | "get" | "events">;
  signer: WebhookSigner;
  allowedHosts: readonly string[];
  send: SendWebhook;
  resolveDns: (name: string, type: "A" | "AAAA", signal: AbortSignal) => Promise<string[]>;
  clock: () => number;
  log: Logger;
  timeoutMs: number;
  maxResponseBytes: number;
  caCerts?: string[];
  backoff?: WebhookBackoffOptions;
  /** Told the due time of each retry this process schedules. */
  onRetry?: (dueMs: number) => void;
  /** Puts a current read ticket on a success's image links (stored without one). */
  tickets?: { current(owner: string, jobId: string): string };
}

type Attempt =
  | { kind: "answer"; status: number; retryAfterMs?: number }
  | { kind: "refused"; reason: string }
  | { kind: "failed"; reason: string };

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.length > 200 ? `${message.slice(0, 200)}…` : message;
}

async function attempt(
  job: JobRecord & { webhook: string },
  task: WebhookTask,
  event: StoredEvent,
  deps: DeliveryDeps,
): Promise<Attempt> {
  const url = job.webhook;
  const deadline = createDeadline(deps.timeoutMs);
  const signal = deadline.signal;
  try {
    const resolveDns: ResolveDns = (name, type) => deps.resolveDns(name, type, signal);
    const check = await checkWebhookTarget(url, deps.allowedHosts, { resolveDns });
    if (!check.ok) return { kind: check.refused ? "refused" : "failed", reason: check.reason };
    // Each attempt's image links carry a ticket valid 15 minutes from now, retries included.
    const body = linkedJson(
      event,
      job.owner ? deps.tickets?.current(job.owner, job.id) : undefined,
    );
    const headers = deps.signer.sign(webhookId(task), new Date(deps.clock()), body);
    const { maxResponseBytes, caCerts } = deps;
    const answer = await deps.send(check.target, { body, headers }, {
      signal,
      maxResponseBytes,
      caCerts,
    });
    const retryAfterMs = parseRetryAfter(answer.headers.get("retry-after"), deps.clock());
    return { kind: "answer", status: answer.status, retryAfterMs };
  } catch (error) {
    if (deadline.expired) {
      return { kind: "failed", reason: `no answer within ${deps.timeoutMs} ms` };
    }
    return { kind: "failed", reason: describe(error) };
  } finally {
    deadline.clear();
  }
}

/**
 * Makes one attempt of a task taken from the outbox and records what follows: done, stopped or
 * retried. Broker errors are thrown (the task then comes back once its lease runs out). `known` is
 * the job as the caller just read it (read here when not given).
 */
export async function deliverTask(
  task: WebhookTask,
  deps: DeliveryDeps,
  known?: JobRecord | null,
): Promise<DeliveryOutcome> {
  const { broker, log } = deps;
  const outbox = broker.webhooks;
  const job = known === undefined ? await broker.get(task.jobId) : known;
  const event = job?.webhook
    ? (await broker.events(task.jobId)).find((e) => e.eventId === task.eventId)
    : undefined;
  if (!job?.webhook || event === undefined) {
    await outbox.done(task);
    return "dropped";
  }
  const host = URL.parse(job.webhook)?.host ?? "?";
  const fields = { jobId: task.jobId, type: task.type, host, attempt: task.attempt + 1 };
  const result = await attempt({ ...job, webhook: job.webhook }, task, event, deps);
  if (result.kind === "refused") {
    log.warn("Cannot deliver the webhook of job {jobId}: {reason}", { ...fields, ...result });
    await outbox.done(task);
    return "refused";
  }
  if (result.kind === "answer" && result.status >= 200 && result.status < 300) {
    await outbox.done(task);
    return "delivered";
  }
  if (result.kind === "answer" && result.status === 410) {
    log.info("The webhook of job {jobId} answered 410: its deliveries stop", fields);
    await outbox.stop(task.jobId);
    return "gone";
  }
  const reason = result.kind === "answer"
    ? `the receiver answered ${result.status}`
    : result.reason;
  const retryAfterMs = result.kind === "answer" ? result.retryAfterMs : undefined;
  const next = nextWebhookAttempt(task, deps.clock(), { ...deps.backoff, retryAfterMs });
  if (next === null) {
    log.warn("Cannot deliver the webhook of job {jobId}, giving up: {reason}", {
      ...fields,
      reason,
    });
    await outbox.done(task);
    return "gave_up";
  }
  log.info("Cannot deliver the webhook of job {jobId} yet: {reason}", {
    ...fields,
    reason,
    retryInMs: next - deps.clock(),
  });
  await outbox.retry(task, next);
  deps.onRetry?.(next);
  return "retried";
}
