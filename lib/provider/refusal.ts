/**
 * How the image provider says no for its content policy. xAI answers a prompt or a reference image its
 * moderation blocks with a 4xx (400 in practice) whose error body names the policy, and it can also
 * answer 200 with an image item marked `"respect_moderation": false` (the image withheld or blurred).
 * Both end a job at once: asking again gets the same answer.
 */
import { PermanentError } from "../errors.ts";

/** A refusal by the provider's content policy: never retried, shown to the user as such. */
export class ContentPolicyError extends PermanentError {
  override name = "ContentPolicyError";
}

/** Words an error code or message of a content-policy refusal contains (and other 400s do not). */
const POLICY_WORDS =
  /content[\s_-]*(policy|moderation|filter|violation)|moderat(ed|ion)|safety|unsafe|nsfw|policy[\s_-]*violation|violates?\s+(our|the)\s+(usage|content)\s+polic/i;

/** Statuses a refusal comes with: client errors but for auth, payment, a missing route and 429. */
const NOT_A_REFUSAL = new Set([401, 402, 404, 408, 429]);

/**
 * True when a provider answer is a content-policy refusal: a 4xx (not 401, 402, 404, 408 or 429)
 * whose error body's code, type or message names content policy, moderation or safety.
 */
export function isRefusal(status: number, code: string, message: string): boolean {
  if (status < 400 || status >= 500 || NOT_A_REFUSAL.has(status)) return false;
  return POLICY_WORDS.test(code) || POLICY_WORDS.test(message);
}
