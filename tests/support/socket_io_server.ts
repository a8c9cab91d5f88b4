/** A real Socket.IO server on 127.0.0.1 standing in for the seed's notification service, for tests. */
import { createServer } from "node:http";
import { Server, type Socket } from "socket.io";

/** One message the server received. */
export interface Received {
  event: string;
  payload: unknown;
  /** The emit's second argument (the bridge's `{event_id}`), when there is one. */
  meta?: unknown;
}

/** A running Socket.IO server that records what its clients emit. */
export interface SocketIoTestServer {
  readonly port: number;
  readonly url: string;
  /** Messages of the recorded events, oldest first, from every connection. */
  readonly received: Received[];
  /** How many connections were made so far. */
  readonly connections: number;
  /** Resolves once `count` messages have arrived in total; rejects after `timeoutMs`. */
  waitFor(count: number, timeoutMs?: number): Promise<Received[]>;
  /** Resolves once `count` connections have been made; rejects after `timeoutMs`. */
  waitForConnections(count: number, timeoutMs?: number): Promise<void>;
  /** Resolves with the reason once a client disconnects (the next one after this call); rejects after `timeoutMs`. */
  nextDisconnect(timeoutMs?: number): Promise<string>;
  close(): Promise<void>;
}

/** Options of startSocketIoServer. */
export interface SocketIoTestServerOptions {
  /** Port to listen on (default 0: a free one). */
  port?: number;
  /** Event names to record (default `notify`). */
  events?: string[];
  /** Called with each new connection, e.g. to disconnect it. */
  onConnection?: (socket: Socket, index: number) => void;
  /** True: call the emit's acknowledgement (its last argument, a function) as a handler may. */
  ack?: boolean;
  /** The engine.io ping interval (socket.io's default: 25 s). */
  pingIntervalMs?: number;
  /** False for a connection whose messages are lost, as on a link that died (default: kept). */
  keep?: (index: number) => boolean;
}

/** Returns a port that was free a moment ago on 127.0.0.1 (for a server that starts later). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Holds `port` until a client has tried it once (its connection closed unanswered), then frees it. */
export async function refuseFirstAttempt(port: number): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  try {
    const conn = await listener.accept();
    conn.close();
  } finally {
    listener.close();
  }
}

/** Starts the server; stop it with close() in a finally. */
export async function startSocketIoServer(
  {
    port = 0,
    events = ["notify"],
    onConnection,
    ack = false,
    pingIntervalMs = 25_000,
    keep = () => true,
  }: SocketIoTestServerOptions = {},
): Promise<SocketIoTestServer> {
  const http = createServer();
  const io = new Server(http, { cors: { origin: "*" }, pingInterval: pingIntervalMs });
  const received: Received[] = [];
  const waiters = new Set<() => void>();
  const disconnects = new Set<(reason: string) => void>();
  let connections = 0;
  const changed = () => waiters.forEach((check) => check());
  io.on("connection", (socket) => {
    const index = ++connections;
    for (const event of events) {
      socket.on(event, (payload: unknown, ...rest: unknown[]) => {
        if (!keep(index)) return;
        const reply = typeof rest.at(-1) === "function" ? rest.pop() as () => void : undefined;
        received.push(rest.length > 0 ? { event, payload, meta: rest[0] } : { event, payload });
        changed();
        if (ack) reply?.();
      });
    }
    socket.on("disconnect", (reason) => disconnects.forEach((resolve) => resolve(reason)));
    changed();
    onConnection?.(socket, connections);
  });
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(port, "127.0.0.1", () => resolve());
  });
  const actual = (http.address() as { port: number }).port;

  function until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`Cannot see ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(check);
    });
  }

  let closing: Promise<void> | null = null;
  return {
    port: actual,
    url: `http://127.0.0.1:${actual}`,
    received,
    get connections() {
      return connections;
    },
    async waitFor(count, timeoutMs = 15_000) {
      await until(() => received.length >= count, timeoutMs, `${count} messages`);
      return received;
    },
    waitForConnections(count, timeoutMs = 15_000) {
      return until(() => connections >= count, timeoutMs, `${count} connections`);
    },
    nextDisconnect(timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const once = (reason: string) => {
          clearTimeout(timer);
          disconnects.delete(once);
          resolve(reason);
        };
        const timer = setTimeout(() => {
          disconnects.delete(once);
          reject(new Error(`Cannot see a disconnection within ${timeoutMs} ms`));
        }, timeoutMs);
        disconnects.add(once);
      });
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        io.close(() => resolve());
      });
      return closing;
    },
  };
}
