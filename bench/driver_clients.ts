/** The driver's job clients: submit one job, then wait for its terminal notification (SSE, WebSocket or socket.io). */

/** Settings every client takes. */
export interface ClientOptions {
  /** Base URL of the service (or the peer). */
  url: string;
  /** Bearer JWTs, one per owner; jobs rotate over them. */
  tokens: string[];
  prompt: string;
  /** Sockets per driver for the `ws` and `socketio` clients. */
  sockets: number;
}

/** Runs jobs one at a time or many at once; `run` resolves with the terminal event type. */
export interface JobClient {
  run(): Promise<string>;
  close(): void;
}

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

/** Reads an SSE body, calling `onEvent` per event, until `onEvent` returns true or the body ends. */
export async function readSse(
  body: ReadableStream<Uint8Array>,
  onEvent: (type: string, data: string) => boolean | void,
): Promise<boolean> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let stop = false;
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return stop;
      buffer += value;
      let end: number;
      while (!stop && (end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let type = "";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) type = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (type && onEvent(type, data) === true) stop = true;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

async function post(
  url: string,
  token: string,
  body: Record<string, string>,
): Promise<{ id: string }> {
  const response = await fetch(`${url}/v1/images`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (response.status !== 202) {
    await response.body?.cancel();
    throw new Error(`Cannot submit: status ${response.status}`);
  }
  return await response.json();
}

/** POST, then `GET /v1/jobs/:id/events` with the Bearer token, read until the terminal event. */
export function sseClient({ url, tokens, prompt }: ClientOptions): JobClient {
  let next = 0;
  return {
    async run() {
      const token = tokens[next++ % tokens.length];
      const { id } = await post(url, token, { prompt });
      const response = await fetch(`${url}/v1/jobs/${id}/events`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      if (response.status !== 200 || !response.body) {
        await response.body?.cancel();
        throw new Error(`Cannot subscribe: status ${response.status}`);
      }
      let terminal = "";
      // Read to the end (the server closes after the terminal event), so the connection is reused.
      await readSse(response.body, (type) => {
        if (TERMINAL.has(type)) terminal = type;
      });
      if (!terminal) throw new Error("Cannot see the terminal event: the stream ended");
      return terminal;
    },
    close() {},
  };
}

interface Socket {
  token: string;
  load: number;
}

/** A pool of sockets, each holding at most `max` subscriptions; `acquire` waits for room. */
class Pool<S extends Socket> {
  #sockets: S[];
  #max: number;
  #waiting: (() => void)[] = [];

  constructor(sockets: S[], max: number) {
    this.#sockets = sockets;
    this.#max = max;
  }

  async acquire(): Promise<S> {
    while (true) {
      let best: S | undefined;
      for (const s of this.#sockets) if (!best || s.load < best.load) best = s;
      if (best && best.load < this.#max) {
        best.load++;
        return best;
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
  }

  release(socket: S): void {
    socket.load--;
    this.#waiting.shift()?.();
  }
}

function waiterMap() {
  const waiters = new Map<string, (type: string) => void>();
  return {
    wait: (id: string) => new Promise<string>((resolve) => waiters.set(id, resolve)),
    settle(id: string, type: string) {
      const resolve = waiters.get(id);
      if (!resolve || !TERMINAL.has(type)) return;
      waiters.delete(id);
      resolve(type);
    },
  };
}

/** POST, then `subscribe` on one of a few shared, token-authenticated WebSockets (at most 100 jobs each). */
export async function wsClient(
  { url, tokens, prompt, sockets }: ClientOptions,
): Promise<JobClient> {
  const waiters = waiterMap();
  const open: (Socket & { ws: WebSocket })[] = [];
  for (let i = 0; i < sockets; i++) {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/v1/ws`);
    const token = tokens[i % tokens.length];
    const ready = Promise.withResolvers<void>();
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token }));
    ws.onerror = () => ready.reject(new Error("Cannot open the WebSocket"));
    ws.onmessage = (event) => {
      const message = JSON.parse(String(event.data));
      if (message.type === "authenticated") ready.resolve();
      else if (message.type === "notification") {
        waiters.settle(message.notification.id, message.notification.type);
      }
    };
    await ready.promise;
    open.push({ ws, token, load: 0 });
  }
  const pool = new Pool(open, 100);
  return {
    async run() {
      const socket = await pool.acquire();
      try {
        const { id } = await post(url, socket.token, { prompt });
        const done = waiters.wait(id);
        socket.ws.send(JSON.stringify({ type: "subscribe", id }));
        return await done;
      } finally {
        pool.release(socket);
      }
    },
    close() {
      for (const { ws } of open) ws.close();
    },
  };
}

/** The peer's flow: join the job's room on a shared socket.io socket (with ack), then POST with that id. */
export async function socketIoClient(
  { url, tokens, prompt, sockets }: ClientOptions,
): Promise<JobClient> {
  const { io } = await import("socket.io-client");
  const waiters = waiterMap();
  const open: (Socket & { socket: ReturnType<typeof io> })[] = [];
  for (let i = 0; i < sockets; i++) {
    const token = tokens[i % tokens.length];
    const socket = io(url, { transports: ["websocket"], auth: { token } });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("connect_error", (error: Error) => reject(error));
    });
    socket.on("notification", (n: { id: string; type: string }) => waiters.settle(n.id, n.type));
    open.push({ socket, token, load: 0 });
  }
  const pool = new Pool(open, Infinity);
  return {
    async run() {
      const entry = await pool.acquire();
      try {
        const id = crypto.randomUUID();
        const done = waiters.wait(id);
        await entry.socket.emitWithAck("subscribe", id);
        await post(url, entry.token, { prompt, id });
        return await done;
      } finally {
        pool.release(entry);
      }
    },
    close() {
      for (const { socket } of open) socket.close();
    },
  };
}
