/** One WebSocket session of `GET /v1/ws`: its messages handled in order, its subscriptions and limits. */
import type { z } from "@hono/zod-openapi";
import { decodeJwt } from "jose";
import type { AppDeps } from "./deps.ts";
import { HttpError, httpErrors } from "../lib/errors.ts";
import { toHttpError } from "./errors.ts";
import { JOB_ID } from "./http.ts";
import { linkedJson, type StoredEvent } from "../lib/live/notifications.ts";
import type { OwnerEvent, Subscription } from "../lib/live/relay.ts";
import { wsMessage } from "./schemas.ts";
import { pause } from "../lib/pause.ts";

/** Time a socket has to send its `auth` message. */
export const AUTH_DEADLINE_MS = 5_000;
/** Largest message a client may send. */
export const MAX_MESSAGE_BYTES = 16 * 1024;
/** Messages that may wait their turn beyond the subscription cap before the socket is closed. */
export const MAX_PENDING_EXTRA = 64;
/**
 * How long a socket may leave more than half the byte bound unread before its next subscription is
 * refused and it is closed: replays wait for the client to read what it was sent, this long at most.
 */
export const READ_WAIT_MS = 5_000;
/** How often a paced replay looks whether the client has read enough. */
const READ_POLL_MS = 20;
const NEVER = new AbortController().signal;

type Message = z.infer<typeof wsMessage>;
/** A queued message: a parsed one, a repeated `auth` (its token dropped), or one that did not parse. */
type Queued = Message | { type: "auth_again" } | { type: "bad" };

/**
 * Serves one socket. Its messages are handled one after another, in the order sent, so `auth` followed
 * at once by `subscribe` works however long the token check takes.
 */
export function serveSocket(
  deps: AppDeps,
  scope: { owner: string; jobId: string } | null,
  socket: WebSocket,
): void {
  const maxSubscriptions = deps.config.WS_MAX_SUBSCRIPTIONS;
  let owner = scope?.owner ?? null;
  const subs = new Map<string, Subscription>();
  /** The subscription to every job of the owner (`subscribe_all`); it counts as one. */
  let all: Subscription | null = null;
  const queue: Queued[] = [];
  let draining = false;
  let authSeen = false;
  let closed = false;
  let deadline: ReturnType<typeof setTimeout> | undefined;
  let expiry: ReturnType<typeof setTimeout> | undefined;
  let release: (() => void) | null = null;

  const close = (code: number, reason: string) => {
    if (socket.readyState <= WebSocket.OPEN) socket.close(code, reason);
  };
  /**
   * Every send goes through here: a client that stopped reading (more than the SSE byte bound left
   * unsent) is cut off rather than buffered without end, whatever it subscribed to.
   */
  const sendText = (text: string) => {
    if (socket.readyState !== WebSocket.OPEN) return;
    if (socket.bufferedAmount > deps.config.SSE_MAX_BUFFERED_BYTES) {
      return close(1013, "Cannot send: the client stopped reading");
    }
    socket.send(text);
  };
  const send = (message: unknown) => sendText(JSON.stringify(message));
  const fail = (error: unknown, id?: string) => {
    const http = toHttpError(error, deps.log);
    send({ type: "error", code: http.code, message: http.message, ...(id ? { id } : {}) });
  };
  /** Takes this socket's one stream slot for the owner; false (and the socket closes) at the cap. */
  const admit = (who: string): boolean => {
    release = deps.streams.acquire(who);
    if (release) return true;
    close(1013, "Too many open streams");
    return false;
  };

  async function authenticate(token: string): Promise<void> {
    if (owner) throw httpErrors.invalid("Cannot authenticate: the socket is authenticated");
    let sub: string;
    try {
      sub = (await deps.auth.verify(token)).sub;
    } catch {
      return close(1008, "Authentication failed");
    }
    if (closed || !admit(sub)) return;
    owner = sub;
    // A bearer token that expires mid-session ends the session.
    const exp = decodeJwt(token).exp;
    if (exp) {
      const ms = Math.min(exp * 1000 - Date.now(), 2 ** 31 - 1);
      expiry = setTimeout(() => close(1008, "Token expired"), Math.max(0, ms));
    }
    send({ type: "authenticated" });
  }

  async function subscribe(who: string, id: string, after: string | undefined): Promise<void> {
    if (scope && scope.jobId !== id) throw httpErrors.notFound();
    if (subs.has(id)) return;
    if (subs.size + (all ? 1 : 0) >= maxSubscriptions) {
      throw httpErrors.rateLimited(1, "Cannot subscribe: too many subscriptions on this socket");
    }
    if (!JOB_ID.test(id)) throw httpErrors.notFound();
    const relay = deps.relay;
    if (!relay) throw httpErrors.notFound();
    let ended = false;
    deps.metrics.subscribers.inc({ transport: "ws" });
    const sink = {
      // The notification's JSON is made once per event and spliced in, not re-serialised per socket.
      event: (e: StoredEvent) => {
        const eventId = JSON.stringify(e.eventId);
        const json = linkedJson(e, deps.tickets.current(who, id));
        sendText(`{"type":"notification","event_id":${eventId},"notification":${json}}`);
      },
      done: (reason: string) => {
        ended = true;
        subs.delete(id);
        deps.metrics.subscribers.dec({ transport: "ws" });
        if (reason === "gone") fail(httpErrors.notFound("Cannot follow the job: it is gone"), id);
      },
    };
    let sub: Subscription;
    try {
      sub = await relay.subscribe(id, sink, after, { owner: who });
    } catch (error) {
      deps.metrics.subscribers.dec({ transport: "ws" });
      throw error;
    }
    if (closed) return sub.close();
    if (!ended) subs.set(id, sub);
  }

  /** Follows every job of the owner, from now or from `cursor` (a `cursor` it was sent). */
  function subscribeAll(who: string, cursor: string | undefined): void {
    if (scope) {
      throw new HttpError(
        403,
        "unauthorized",
        "Cannot subscribe to all jobs: a ticket is scoped to one job",
      );
    }
    if (all) return;
    if (subs.size >= maxSubscriptions) {
      throw httpErrors.rateLimited(1, "Cannot subscribe: too many subscriptions on this socket");
    }
    const relay = deps.relay;
    if (!relay) throw httpErrors.notFound("Cannot follow the jobs: no relay here");
    deps.metrics.subscribers.inc({ transport: "ws" });
    let ended = false;
    const subscription = relay.subscribeOwner(who, {
      event: ({ cursor, event }: OwnerEvent) => {
        const json = linkedJson(event, deps.tickets.current(who, event.notification.id));
        sendText(
          `{"type":"notification","event_id":${JSON.stringify(event.eventId)},` +
            `"cursor":${JSON.stringify(cursor)},"notification":${json}}`,
        );
      },
      reset: () => send({ type: "reset" }),
      done: () => {
        ended = true;
        deps.metrics.subscribers.dec({ transport: "ws" });
        // Still current: the relay ended it (shutting down, or this socket fell too far behind).
        if (all !== subscription) return;
        all = null;
        if (!closed) {
          const why = "Cannot follow the jobs: subscribe_all again with the last cursor";
          fail(httpErrors.unavailable(1, why));
        }
      },
    }, cursor);
    if (!ended) all = subscription;
  }

  async function handle(message: Queued): Promise<void> {
    if (message.type === "bad") {
      return fail(httpErrors.invalid("Cannot read the message: bad shape"));
    }
    if (message.type === "auth") return await authenticate(message.token);
    if (message.type === "auth_again") {
      // Only reached when the first auth succeeded (a failed one closes the socket).
      throw httpErrors.invalid("Cannot authenticate: the socket is authenticated");
    }
    if (!owner) return close(1008, "Authentication required");
    if (message.type === "unsubscribe") return subs.get(message.id)?.close();
    if (message.type === "subscribe_all") return subscribeAll(owner, message.cursor);
    if (message.type === "unsubscribe_all") return closeAll();
    try {
      await subscribe(owner, message.id, message.last_event_id);
    } catch (error) {
      fail(error, message.id);
    }
  }

  /** Ends the `subscribe_all` subscription, when there is one. */
  function closeAll(): void {
    const subscription = all;
    all = null;
    subscription?.close();
  }

  /**
   * Waits until the client has read all but half the byte bound of what it was sent (true), so that
   * each subscription's replay goes out only as fast as the client reads; false, and the socket
   * closes, when it has not within READ_WAIT_MS.
   */
  async function caughtUp(): Promise<boolean> {
    const limit = deps.config.SSE_MAX_BUFFERED_BYTES / 2;
    const deadline = Date.now() + READ_WAIT_MS;
    while (socket.readyState === WebSocket.OPEN && socket.bufferedAmount > limit) {
      if (Date.now() >= deadline) {
        close(1013, "Cannot send: the client stopped reading");
        return false;
      }
      await pause(READ_POLL_MS, NEVER);
    }
    return socket.readyState === WebSocket.OPEN;
  }

  async function drain(): Promise<void> {
    draining = true;
    while (queue.length > 0 && !closed) {
      const next = queue[0];
      if ((next.type === "subscribe" || next.type === "subscribe_all") && !(await caughtUp())) {
        break;
      }
      try {
        await handle(queue.shift()!);
      } catch (error) {
        fail(error);
      }
    }
    draining = false;
  }

  function receive(data: unknown): void {
    if (closed) return;
    const text = typeof data === "string" ? data : "";
    if (text.length === 0 || text.length > MAX_MESSAGE_BYTES) {
      return close(1009, "Message too large or not text");
    }
    if (queue.length >= maxSubscriptions + MAX_PENDING_EXTRA) {
      return close(1008, "Too many messages waiting");
    }
    let parsed;
    try {
      parsed = wsMessage.safeParse(JSON.parse(text));
    } catch {
      parsed = null;
    }
    let item: Queued = parsed?.success ? parsed.data : { type: "bad" };
    if (item.type === "auth") {
      // Arriving in time is what the deadline asks; the check itself may take longer.
      clearTimeout(deadline);
      if (authSeen || scope) item = { type: "auth_again" };
      authSeen = true;
    }
    queue.push(item);
    if (!draining) void drain();
  }

  // A drain closes the socket with "service restart" (1012): the client reconnects elsewhere.
  const onDrain = () => close(1012, "Service restart");
  deps.draining?.addEventListener("abort", onDrain, { once: true });
  socket.onopen = () => {
    if (deps.draining?.aborted) return onDrain();
    if (owner) return void admit(owner);
    deadline = setTimeout(() => close(1008, "Authentication timed out"), AUTH_DEADLINE_MS);
  };
  socket.onmessage = (event) => receive(event.data);
  socket.onerror = () => {};
  socket.onclose = () => {
    deps.draining?.removeEventListener("abort", onDrain);
    closed = true;
    queue.length = 0;
    clearTimeout(deadline);
    clearTimeout(expiry);
    release?.();
    for (const sub of [...subs.values()]) sub.close();
    subs.clear();
    closeAll();
  };
}
