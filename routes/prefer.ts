/** `Prefer: wait=N` (RFC 7240): reading the preference, and waiting for a job's end on the relay. */
import type { Relay } from "../lib/live/relay.ts";

/** Longest wait a request may ask for, in seconds; larger values count as this. */
export const MAX_WAIT_SEC = 60;

/** Splits on `separator` outside quoted strings (a quoted `\"` does not end the string). */
function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quoted && char === "\\") i++;
    else if (char === '"') quoted = !quoted;
    else if (!quoted && char === separator) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/**
 * The seconds a `Prefer` header asks to wait (1 to 60, larger counting as 60); undefined when it has
 * no `wait` preference; "invalid" when its `wait` is malformed or below 1. Other preferences are
 * ignored, and the first `wait` wins, as RFC 7240 says.
 */
export function parseWait(header: string | undefined): number | undefined | "invalid" {
  if (header === undefined) return undefined;
  for (const element of splitOutsideQuotes(header, ",")) {
    const [preference] = splitOutsideQuotes(element, ";");
    const at = preference.indexOf("=");
    const name = (at < 0 ? preference : preference.slice(0, at)).trim();
    if (name.toLowerCase() !== "wait") continue;
    if (at < 0) return "invalid";
    let value = preference.slice(at + 1).trim();
    if (/^"[^"]*"$/.test(value)) value = value.slice(1, -1);
    if (!/^\d{1,20}$/.test(value)) return "invalid";
    const seconds = Number(value);
    return seconds < 1 ? "invalid" : Math.min(seconds, MAX_WAIT_SEC);
  }
  return undefined;
}

/**
 * Waits until the job ends (true), or `ms` pass, the signal aborts, or the job is gone (false). Uses
 * one relay subscription, freed whichever way the wait ends.
 */
export async function waitForEnd(
  relay: Relay,
  job: { id: string; owner: string },
  { ms, signal }: { ms: number; signal?: AbortSignal },
): Promise<boolean> {
  if (signal?.aborted) return false;
  const ended = Promise.withResolvers<boolean>();
  const timer = setTimeout(() => ended.resolve(false), ms);
  const abort = () => ended.resolve(false);
  signal?.addEventListener("abort", abort, { once: true });
  let subscription: { close(): void } | undefined;
  try {
    const sink = { event() {}, done: (reason: string) => ended.resolve(reason === "terminal") };
    subscription = await relay.subscribe(job.id, sink, undefined, { owner: job.owner });
    return await ended.promise;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", abort);
    subscription?.close();
  }
}
