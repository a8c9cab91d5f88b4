/**
 * The bridge to the seed's front ends: every terminal notification is also emitted, once, to the seed's
 * Socket.IO notification service, in the seed's shape `{Id, success, data}`.
 */
import type { Logger } from "@logtape/logtape";
import { Counter, type Registry } from "prom-client";
import { io, type Socket } from "socket.io-client";
import { dataUrl } from "./notifications.ts";

/** A notification as the seed emits it: `data` is `{image}` (a data URL) on success, else the user's message. */
export interface SeedNotice {
  Id: string;
  success: boolean;
  data: { image: string } | string;
}

/** How a job ended, as the process that ended it knows it (a broker `Outcome` fits, and so does a cancel). */
export type TerminalOutcome =
  | { type: "succeeded"; mimeType: string; base64?: string; image?: Uint8Array }
  | { type: "failed" | "canceled"; error: string };

/** Dependencies and settings of a SocketIoNotifier. */
export interface SocketIoNotifierOptions {
  /** The Socket.IO service, e.g. `http://127.0.0.1:4001`. */
  url: string;
  /** Event name of the emits (the seed's is `notify`). */
  event?: string;
  log: Logger;
  /** Notices kept while the service is away; beyond it the oldest is dropped. */
  maxPending?: number;
  /** Bytes (roughly: string length) those notices may hold; beyond it the oldest is dropped. */
  maxPendingBytes?: number;
  /** Longest pause between reconnection attempts. */
  reconnectDelayMaxMs?: number;
  /** Called with each notice handed to the socket, for metrics. */
  onEmitted?: () => void;
  /** Called with each notice dropped because the buffer was full, for metrics. */
  onDropped?: () => void;
}

interface Pending {
  notice: SeedNotice;
  bytes: number;
}

/** Builds the seed's notice of a job's end. */
export function seedNotice(jobId: string, outcome: TerminalOutcome): SeedNotice {
  if (outcome.type !== "succeeded") return { Id: jobId, success: false, data: outcome.error };
  const base64 = outcome.base64 ?? outcome.image?.toBase64() ?? "";
  return { Id: jobId, success: true, data: { image: dataUrl(outcome.mimeType, base64) } };
}

function sizeOf(notice: SeedNotice): number {
  const data = typeof notice.data === "string" ? notice.data : notice.data.image;
  return notice.Id.length + data.length + 64;
}

/** The metric hooks of a notifier, counted on `registry` as `socket_io_notifications_total{result}`. */
export function socketIoCounters(
  registry: Registry,
): Pick<SocketIoNotifierOptions, "onEmitted" | "onDropped"> {
  const counter = new Counter({
    name: "socket_io_notifications_total",
    help: "Terminal notifications for the seed's Socket.IO service, by result (emitted, dropped)",
    labelNames: ["result"],
    registers: [registry],
  });
  return {
    onEmitted: () => counter.inc({ result: "emitted" }),
    onDropped: () => counter.inc({ result: "dropped" }),
  };
}

/**
 * One long-lived Socket.IO connection that emits terminal notifications without ever blocking or
 * failing a job: notify() returns at once, notices wait in a bounded buffer while the service is away
 * (the oldest dropped when full), and the connection comes back by itself.
 */
export class SocketIoNotifier {
  #socket: Socket;
  #event: string;
  #log: Logger;
  #origin: string;
  #maxPending: number;
  #maxPendingBytes: number;
  #retryMs: number;
  #onEmitted?: () => void;
  #onDropped?: () => void;
  #pending: Pending[] = [];
  #pendingBytes = 0;
  /** Drops since the last connection, reported once it is back. */
  #dropped = 0;
  /** Connection errors since the last connection: only the first is a warning. */
  #failures = 0;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #closing: Promise<void> | null = null;

  constructor(options: SocketIoNotifierOptions) {
    const { maxPending = 1_000, maxPendingBytes = 64 * 1024 * 1024 } = options;
    if (!(maxPending >= 1 && maxPendingBytes >= 1)) {
      throw new RangeError("Cannot create the Socket.IO notifier: the buffer bounds must be >= 1");
    }
    this.#event = options.event ?? "notify";
    this.#log = options.log;
    this.#origin = new URL(options.url).origin;
    this.#maxPending = maxPending;
    this.#maxPendingBytes = maxPendingBytes;
    this.#retryMs = options.reconnectDelayMaxMs ?? 5_000;
    this.#onEmitted = options.onEmitted;
    this.#onDropped = options.onDropped;
    // The seed connects with no auth and no query; its own socket.io-client buffer is unbounded, so
    // this one emits only while connected and keeps its own bounded buffer.
    this.#socket = io(options.url, {
      reconnection: true,
      reconnectionDelayMax: this.#retryMs,
      forceNew: true,
    });
    this.#socket.on("connect", () => this.#connected());
    this.#socket.on("connect_error", (error) => this.#failed(error));
    this.#socket.on("disconnect", (reason) => this.#disconnected(reason));
  }

  /** Notices waiting for the connection. */
  get pending(): number {
    return this.#pending.length;
  }

  /** True while connected to the service. */
  get connected(): boolean {
    return this.#socket.connected;
  }

  /** Emits the job's terminal notice once, now or when the service is back; never throws, never waits. */
  notify(jobId: string, outcome: TerminalOutcome): void {
    if (this.#closed) return;
    try {
      const notice = seedNotice(jobId, outcome);
      this.#pending.push({ notice, bytes: sizeOf(notice) });
      this.#pendingBytes += this.#pending.at(-1)!.bytes;
      this.#trim();
      if (this.#socket.connected) this.#flush();
    } catch (error) {
      this.#log.error("Cannot notify the Socket.IO service of job {id}: {error}", {
        id: jobId,
        error: String(error),
      });
    }
  }

  /** Drops the oldest notices beyond the bounds (the newest one always stays). */
  #trim(): void {
    while (
      this.#pending.length > 1 &&
      (this.#pending.length > this.#maxPending || this.#pendingBytes > this.#maxPendingBytes)
    ) {
      const { notice, bytes } = this.#pending.shift()!;
      this.#pendingBytes -= bytes;
      if (this.#dropped++ === 0) {
        this.#log.warn(
          "Cannot keep the Socket.IO notice of job {id}: the buffer is full while {url} is away; dropping the oldest",
          { id: notice.Id, url: this.#origin },
        );
      }
      this.#onDropped?.();
    }
  }

  #flush(): void {
    while (this.#pending.length > 0 && this.#socket.connected) {
      const { notice, bytes } = this.#pending.shift()!;
      this.#pendingBytes -= bytes;
      this.#socket.emit(this.#event, notice);
      this.#onEmitted?.();
    }
  }

  #connected(): void {
    this.#log.info("Connected to the Socket.IO notification service at {url}", {
      url: this.#origin,
    });
    if (this.#dropped > 0) {
      this.#log.warn("Dropped {count} Socket.IO notices while {url} was away", {
        count: this.#dropped,
        url: this.#origin,
      });
    }
    this.#dropped = 0;
    this.#failures = 0;
    this.#flush();
  }

  #failed(error: Error): void {
    const level = this.#failures++ === 0 ? "warn" : "debug";
    this.#log[level]("Cannot connect to the Socket.IO notification service at {url}: {error}", {
      url: this.#origin,
      error: error.message,
    });
    // Refused by a server middleware: socket.io-client gives up, so try again later.
    if (!this.#socket.active) this.#reconnectLater();
  }

  #disconnected(reason: string): void {
    if (this.#closed) return;
    this.#log.warn("Disconnected from the Socket.IO notification service at {url}: {reason}", {
      url: this.#origin,
      reason,
    });
    // Disconnected by the server: socket.io-client does not reconnect by itself then.
    if (!this.#socket.active) this.#reconnectLater();
  }

  #reconnectLater(): void {
    if (this.#closed || this.#retry !== undefined) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      if (!this.#closed) this.#socket.connect();
    }, this.#retryMs);
  }

  /** Closes the connection (what is already emitted is still sent) and forgets what is pending; idempotent. */
  close(): Promise<void> {
    // Kept: a second call gets the same promise (a throw in the executor rejects it).
    this.#closing ??= new Promise<void>((resolve) => {
      this.#closed = true;
      clearTimeout(this.#retry);
      if (this.#pending.length > 0) {
        this.#log.warn("Closing with {count} Socket.IO notices not sent to {url}", {
          count: this.#pending.length,
          url: this.#origin,
        });
      }
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#socket.close(); // its listeners see #closed and stay quiet
      resolve();
    });
    return this.#closing;
  }
}
