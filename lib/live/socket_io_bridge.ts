/**
 * The bridge to the seed's front ends: every terminal notification is also emitted to the seed's
 * Socket.IO notification service, in the seed's shape `{Id, success, data}`, at least once. The
 * notices come from the broker's durable outbox (one per job end, written with the terminal event),
 * and each leaves it only once its emit is confirmed (see socket_io_confirm.ts); a process that dies
 * first leaves it there, and it goes out again after its lease. A repeat carries the same event id.
 */
import type { Logger } from "@logtape/logtape";
import { io, type Socket } from "socket.io-client";
import { pause, Wakeable } from "../pause.ts";
import type { Broker, NoticeOutbox, WebhookTask } from "../queue/types.ts";
import { type NoticeMeta, seedNotice } from "./seed_notice.ts";
import { isTerminal } from "./notifications.ts";
import { Confirmations } from "./socket_io_confirm.ts";
import { onOutboxWakeup, type OutboxWakeups, PUSHED_IDLE_MS } from "./wakeups.ts";

/** Dependencies and settings of a SocketIoNotifier. */
export interface SocketIoNotifierOptions {
  /** The Socket.IO service, e.g. `http://127.0.0.1:4001`. */
  url: string;
  /** Event name of the emits (the seed's is `notify`). */
  event?: string;
  log: Logger;
  /** The outbox of job ends (a broker created with `notices`) and the jobs' events. */
  broker: { notices: NoticeOutbox; events: Broker["events"] };
  /**
   * How long a taken notice stays hidden from other processes while this one waits for its
   * confirmation (longer than two of the server's ping intervals); a dead process's come back then.
   */
  leaseMs?: number;
  /** Notices emitted and not yet confirmed, at most. */
  maxUnconfirmed?: number;
  /** Longest wait between two looks at the outbox when nothing nudges (default: leaseMs / 4, 30 s at most). */
  idleMs?: number;
  /** Push wake-ups (Upstash): while live, a job end's "w" wakes the loop, which otherwise waits long. */
  wakeups?: OutboxWakeups;
  /**
   * While the service is away, notices older than this (their jobs have expired: JOB_TTL_SECONDS) are
   * dropped and counted, so that the outbox stays bounded; unset: kept.
   */
  maxAgeMs?: number;
  /** Longest pause between reconnection attempts. */
  reconnectDelayMaxMs?: number;
  clock?: () => number;
  /** Called with each notice emitted (a repeat too), for metrics. */
  onEmitted?: () => void;
  /** Called with each notice confirmed and forgotten, for metrics. */
  onConfirmed?: () => void;
  /** Called with each notice dropped unsent (its job expired first), for metrics. */
  onDropped?: () => void;
}

/**
 * One long-lived Socket.IO connection that emits the outbox's notices while connected and never
 * blocks or fails a job; the connection comes back by itself, and what it lost goes out again.
 */
export class SocketIoNotifier {
  #socket: Socket;
  #event: string;
  #log: Logger;
  #origin: string;
  #broker: SocketIoNotifierOptions["broker"];
  #leaseMs: number;
  #maxUnconfirmed: number;
  #idleMs: number;
  #maxAgeMs?: number;
  #retryMs: number;
  #clock: () => number;
  #hooks: Pick<SocketIoNotifierOptions, "onEmitted" | "onConfirmed" | "onDropped">;
  #confirmations = new Confirmations();
  /** Connection errors since the last connection: only the first is a warning. */
  #failures = 0;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #stop = new AbortController();
  #wake = new Wakeable();
  #nudged = false;
  #loop: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  #wakeups?: SocketIoNotifierOptions["wakeups"];
  #unlisten?: () => void;

  constructor(options: SocketIoNotifierOptions) {
    const { leaseMs = 120_000, maxUnconfirmed = 256 } = options;
    const idleMs = options.idleMs ?? Math.max(50, Math.min(30_000, leaseMs / 4));
    if (!(leaseMs >= 1 && maxUnconfirmed >= 1 && idleMs >= 1)) {
      throw new RangeError("Cannot create the Socket.IO notifier: a bound is < 1");
    }
    this.#event = options.event ?? "notify";
    this.#log = options.log;
    this.#origin = new URL(options.url).origin;
    this.#broker = options.broker;
    this.#leaseMs = leaseMs;
    this.#maxUnconfirmed = maxUnconfirmed;
    this.#idleMs = idleMs;
    this.#maxAgeMs = options.maxAgeMs;
    this.#retryMs = options.reconnectDelayMaxMs ?? 5_000;
    this.#clock = options.clock ?? Date.now;
    this.#hooks = options;
    this.#wakeups = options.wakeups;
    // The seed connects with no auth and no query. Emits happen only while connected (socket.io's
    // own buffer would hold them unbounded and unconfirmed).
    this.#socket = io(options.url, {
      reconnection: true,
      reconnectionDelayMax: this.#retryMs,
      forceNew: true,
      autoConnect: false,
    });
    this.#socket.on("connect", () => this.#connected());
    this.#socket.on("connect_error", (error) => this.#failed(error));
    this.#socket.on("disconnect", (reason) => this.#disconnected(reason));
    this.#socket.io.on("ping", () => this.#ping());
  }

  /** Notices emitted and not yet confirmed. */
  get unconfirmed(): number {
    return this.#confirmations.size;
  }

  /** True while connected to the service. */
  get connected(): boolean {
    return this.#socket.connected;
  }

  /** Connects and starts emitting the outbox's notices (once). */
  start(): void {
    if (this.#loop !== null || this.#closing !== null) return;
    this.#socket.connect();
    this.#unlisten = onOutboxWakeup(this.#wakeups, () => this.nudge());
    this.#loop = this.#run();
  }

  /** The idle wait: `idleMs`, or with push wake-ups live PUSHED_IDLE_MS (a job end wakes it). */
  #idleFor(): number {
    return this.#wakeups?.live ? Math.max(this.#idleMs, PUSHED_IDLE_MS) : this.#idleMs;
  }

  /** Looks at the outbox now rather than at the next poll (call it right after a job ended). */
  nudge(): void {
    this.#nudged = true;
    this.#wake.wake();
  }

  async #run(): Promise<void> {
    const stop = this.#stop.signal;
    let failures = 0;
    while (!stop.aborted) {
      const free = this.#maxUnconfirmed - this.#confirmations.size;
      if (!this.#socket.connected || free <= 0) {
        if (!this.#socket.connected) await this.#prune();
        await this.#wake.sleep(this.#idleMs, stop);
        continue;
      }
      this.#nudged = false;
      let tasks: WebhookTask[];
      try {
        tasks = await this.#broker.notices.take(this.#clock(), free, this.#leaseMs);
        failures = 0;
      } catch (error) {
        failures++;
        this.#log.warn("Cannot read the Socket.IO outbox (attempt {failures}): {error}", {
          failures,
          error: String(error),
        });
        await pause(Math.min(this.#idleMs * 2 ** Math.min(failures, 5), 30_000), stop);
        continue;
      }
      await Promise.all(tasks.map((task) => this.#emit(task)));
      if (tasks.length < free && !this.#nudged && !stop.aborted) {
        await this.#wake.sleep(this.#idleFor(), stop);
      }
    }
  }

  /** While the service is away: drops the notices whose jobs expired since (read, none emitted). */
  async #prune(): Promise<void> {
    if (this.#maxAgeMs === undefined) return;
    try {
      const before = this.#clock() - this.#maxAgeMs;
      const old = await this.#broker.notices.take(before, 100, this.#leaseMs);
      // Each is dropped (its job is gone) or, still there, given back due now.
      await Promise.all(old.map((task) => this.#emit(task)));
    } catch (error) {
      this.#log.warn("Cannot prune the Socket.IO outbox: {error}", { error: String(error) });
    }
  }

  /** Emits one notice with its event id; a broker error leaves it to come back after its lease. */
  async #emit(task: WebhookTask): Promise<void> {
    try {
      const events = await this.#broker.events(task.jobId);
      const event = events.find((e) => e.eventId === task.eventId);
      if (event === undefined || !isTerminal(event.notification.type)) {
        this.#hooks.onDropped?.(); // the job expired before its notice could go out
        return await this.#broker.notices.done(task);
      }
      if (!this.#socket.connected) return await this.#broker.notices.retry(task, this.#clock());
      const key = this.#confirmations.add(task);
      const meta: NoticeMeta = { event_id: task.eventId };
      this.#socket.timeout(this.#leaseMs).emit(
        this.#event,
        seedNotice(event.notification),
        meta,
        (error: Error | null) => {
          if (!error) this.#confirm(this.#confirmations.ack(key));
        },
      );
      this.#hooks.onEmitted?.();
    } catch (error) {
      this.#log.warn("Cannot emit the Socket.IO notice of job {id}: {error}", {
        id: task.jobId,
        error: String(error),
      });
    }
  }

  #confirm(task: WebhookTask | undefined): void {
    if (task === undefined) return;
    this.#hooks.onConfirmed?.();
    this.#broker.notices.done(task).catch((error) =>
      this.#log.warn("Cannot forget the confirmed Socket.IO notice of job {id}: {error}", {
        id: task.jobId,
        error: String(error),
      })
    );
    this.#wake.wake(); // a confirmation frees room for more
  }

  #ping(): void {
    for (const task of this.#confirmations.ping()) this.#confirm(task);
  }

  /** Gives the unconfirmed notices back to the outbox, due now: they go out again. */
  async #giveBack(): Promise<void> {
    const now = this.#clock();
    await Promise.allSettled(
      this.#confirmations.drain().map((task) => this.#broker.notices.retry(task, now)),
    );
  }

  #connected(): void {
    this.#log.info("Connected to the Socket.IO notification service at {url}", {
      url: this.#origin,
    });
    this.#failures = 0;
    this.#wake.wake();
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
    if (this.#closing !== null) return;
    this.#log.warn("Disconnected from the Socket.IO notification service at {url}: {reason}", {
      url: this.#origin,
      reason,
    });
    void this.#giveBack();
    // Disconnected by the server: socket.io-client does not reconnect by itself then.
    if (!this.#socket.active) this.#reconnectLater();
  }

  #reconnectLater(): void {
    if (this.#closing !== null || this.#retry !== undefined) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      if (this.#closing === null) this.#socket.connect();
    }, this.#retryMs);
  }

  /**
   * Stops emitting, gives the unconfirmed notices back to the outbox (the next process emits them
   * again) and closes the connection; idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      this.#unlisten?.();
      clearTimeout(this.#retry);
      await this.#loop;
      await this.#giveBack();
      this.#socket.close(); // its listeners see #closing and stay quiet
    })();
    return this.#closing;
  }
}
