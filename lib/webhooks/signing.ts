/** Standard Webhooks signatures: the stable message id and the three signed headers of a delivery. */
import { Webhook } from "standardwebhooks";
import type { WebhookTask } from "../queue/types.ts";

/** The Standard Webhooks headers of one delivery attempt. */
export type SignedHeaders = {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
};

/**
 * The delivery's `webhook-id`: the same on every retry of one event (receivers deduplicate on it),
 * different for every event, since the job's event id is part of it.
 */
export function webhookId(task: Pick<WebhookTask, "jobId" | "type" | "eventId">): string {
  return `msg_${task.jobId}_${task.type}_${task.eventId}`;
}

/** Signs deliveries with one `whsec_<base64>` secret (the key is decoded once). */
export class WebhookSigner {
  #webhook: Webhook;

  /** Decodes the secret; throws when it is not `whsec_<base64>` (or bare base64). */
  constructor(secret: string) {
    this.#webhook = new Webhook(secret);
  }

  /** The headers of one attempt, signed over the id, the attempt's time (in seconds) and the body. */
  sign(id: string, at: Date, body: string): SignedHeaders {
    return {
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
      "webhook-signature": this.#webhook.sign(id, at, body),
    };
  }
}
