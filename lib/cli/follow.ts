/** Follows one job to its end over SSE: reconnects with Last-Event-ID, polls the job when it must. */
import type { ApiClient, JobDocument } from "./api.ts";
import { CliError, EXIT, responseError } from "./errors.ts";
import { readSse } from "./sse.ts";

/** How a job ended. */
export interface JobEnd {
  type: "succeeded" | "failed" | "canceled";
  error?: string;
  /** The image as a data URL, when the ending carried it. */
  image?: string;
}

/** Options of followJob. */
export interface FollowOptions {
  client: ApiClient;
  id: string;
  /** The submit answer's `urls.events` (with its ticket), if any. */
  eventsPath?: string;
  /** Called with each state the job reaches: queued, started, succeeded, failed, canceled. */
  onState: (state: string, detail?: string) => void;
  /** Aborts the whole follow (Ctrl-C); its reason is thrown. */
  signal: AbortSignal;
  /** Failed connections in a row before giving up (default 6). */
  maxFailures?: number;
  /** First reconnect delay, doubled each time up to 4 s (default 250 ms). */
  retryBaseMs?: number;
  /** Silence after which a stream counts as dropped (default 45 s: three missed keepalives). */
  idleMs?: number;
}

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

/** Waits `ms`, or rejects with the signal's reason when it aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", done);
      resolve();
    }, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The ending a job document shows, if it has ended. */
function endOf(job: JobDocument): JobEnd | null {
  if (job.status === "succeeded") return { type: "succeeded", image: job.result?.image };
  if (job.status === "failed") return { type: "failed", error: job.error ?? "the job failed" };
  if (job.status === "canceled") return { type: "canceled", error: "the job was canceled" };
  return null;
}

/** The notification carried by one event, or null for anything the CLI does not know. */
function notificationOf(data: string): { type: string; error?: string; image?: string } | null {
  try {
    const n = JSON.parse(data) as { type?: unknown; error?: unknown; data?: { image?: unknown } };
    if (typeof n.type !== "string") return null;
    const error = typeof n.error === "string" ? n.error : undefined;
    const image = typeof n.data?.image === "string" ? n.data.image : undefined;
    return { type: n.type, error, image };
  } catch {
    return null;
  }
}

/** True for errors worth another try: the service unreachable, 5xx, 429, a dropped stream. */
function retryable(error: unknown): boolean {
  return error instanceof CliError && error.exitCode === EXIT.unreachable;
}

/** Follows the job until it ends and returns how; throws CliError when it cannot. */
export async function followJob(options: FollowOptions): Promise<JobEnd> {
  const { client, id, onState, signal, maxFailures = 6, retryBaseMs = 250, idleMs } = options;
  const bearerPath = `/v1/jobs/${encodeURIComponent(id)}/events`;
  let useTicket = options.eventsPath !== undefined;
  let lastEventId: string | undefined;
  let shown = "";
  let polled = "";
  let failures = 0;
  let problem: unknown;
  const show = (state: string, detail?: string) => {
    shown = state;
    onState(state, detail);
  };
  /** Reads the job once: its ending, or null (showing its state if the events missed it). */
  const poll = async () => {
    const job = await client.job(id, signal);
    const end = endOf(job);
    const state = job.status === "running" ? "started" : job.status;
    if (!end && state !== shown) {
      show(state);
      polled = state;
    }
    return end;
  };

  while (true) {
    signal.throwIfAborted();
    try {
      const res = await client.events(useTicket ? options.eventsPath! : bearerPath, {
        lastEventId,
        bearer: !useTicket,
        signal,
      });
      if (res.status === 401 && useTicket) {
        // The ticket expired (they last minutes): the bearer token reads the same stream.
        await res.body?.cancel();
        useTicket = false;
        continue;
      }
      if (res.status === 204) {
        // Nothing after lastEventId and the job has ended: its document says how.
        const end = await poll();
        if (end) return end;
      } else if (!res.ok || !res.body) {
        const error = await responseError(res, "follow the job");
        if (res.status !== 429) throw error;
        throw new CliError(EXIT.unreachable, error.message);
      } else {
        try {
          for await (const event of readSse(res.body, { idleMs })) {
            if (event.id !== undefined) lastEventId = event.id;
            failures = 0;
            const n = notificationOf(event.data);
            if (!n) continue;
            // A state a poll already showed (or a replayed queued) comes again as an event: show it once.
            const seen = n.type === polled || (n.type === "queued" && shown !== "");
            polled = "";
            if (!seen) show(n.type, n.type === "succeeded" ? undefined : n.error);
            if (TERMINAL.has(n.type)) {
              return { type: n.type as JobEnd["type"], error: n.error, image: n.image };
            }
          }
        } catch (error) {
          if (signal.aborted || error instanceof CliError) throw error;
          const reason = error instanceof Error ? error.message : String(error);
          throw new CliError(EXIT.unreachable, `Cannot read the events: ${reason}`, {
            cause: error,
          });
        }
      }
      problem = new CliError(EXIT.unreachable, "Cannot follow the job: the event stream ended");
    } catch (error) {
      if (signal.aborted || !retryable(error)) throw error;
      problem = error;
    }
    failures++;
    // A single drop is only reconnected; from the second failure on, the job's document is read too.
    if (failures > 1) {
      try {
        const end = await poll();
        if (end) return end;
      } catch (error) {
        if (signal.aborted || !retryable(error)) throw error;
      }
    }
    if (failures >= maxFailures) {
      const reason = problem instanceof Error ? problem.message : String(problem);
      throw new CliError(EXIT.unreachable, `Cannot follow the job ${id}: ${reason}`);
    }
    await sleep(Math.min(4_000, retryBaseMs * 2 ** (failures - 1)), signal);
  }
}
