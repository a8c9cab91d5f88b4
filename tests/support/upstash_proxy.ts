/** An Upstash-REST-compatible HTTP proxy in front of a real redis-server, for tests. */
import { z } from "zod";
import { encodeCommand, parseReply, RespError, type RespValue } from "./redis_server.ts";
import { PubSubEndpoints } from "./upstash_pubsub.ts";

/** A running proxy. */
export interface UpstashProxy {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** How many Redis commands it has forwarded. */
  readonly commands: number;
  /** How many authorized HTTP requests it has served. */
  readonly requests: number;
  /** Billed commands by name (EVALSHA by the script's first 8 SHA characters; "message" per delivery). */
  readonly byName: Map<string, number>;
  /** Subscription streams (`/subscribe/<channel>`) open now. */
  readonly subscribers: number;
  /** Ends every open subscription stream, as a dropped connection would. */
  dropSubscriptions(): void;
  /** Stops the HTTP server and the Redis connection; idempotent. */
  close(): Promise<void>;
}

type Arg = string | Uint8Array;

const commandSchema = z.array(z.union([z.string(), z.number(), z.boolean()])).min(1);
const pipelineSchema = z.array(commandSchema).min(1);

/** Commands Upstash refuses: blocking ones, pub/sub, transactions by hand and connection state. */
const REJECTED = new Set(
  ("BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP SUBSCRIBE PSUBSCRIBE SSUBSCRIBE " +
    "MONITOR WAIT WAITAOF MULTI EXEC DISCARD WATCH UNWATCH SELECT AUTH HELLO QUIT RESET").split(
      " ",
    ),
);

/** The error for a command Upstash refuses, or undefined when it is allowed. */
function refusal(command: string[]): string | undefined {
  const name = command[0].toUpperCase();
  let refused = REJECTED.has(name);
  if (name === "XREAD" || name === "XREADGROUP") {
    const streams = command.findIndex((arg) => arg.toUpperCase() === "STREAMS");
    const head = streams < 0 ? command : command.slice(0, streams);
    refused = head.some((arg) => arg.toUpperCase() === "BLOCK");
  }
  return refused ? `ERR Command is not available: '${command[0]}'` : undefined;
}

/** One pipelined RESP2 connection; each batch is written whole, so batches never interleave. */
class RespConnection {
  readonly #conn: Deno.TcpConn;
  readonly #pending: {
    count: number;
    values: RespValue[];
    resolve(v: RespValue[]): void;
    reject(e: Error): void;
  }[] = [];
  #writing: Promise<void> = Promise.resolve();
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;
  readonly reading: Promise<void>;
  closed = false;

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.reading = this.#readLoop();
  }

  send(commands: Arg[][]): Promise<RespValue[]> {
    if (this.closed) return Promise.reject(new Error("Cannot send: the Redis connection closed"));
    const bytes = commands.map(encodeCommand);
    const { promise, resolve, reject } = Promise.withResolvers<RespValue[]>();
    this.#pending.push({ count: commands.length, values: [], resolve, reject });
    this.#writing = this.#writing.then(async () => {
      for (const chunk of bytes) {
        for (let sent = 0; sent < chunk.length;) {
          sent += await this.#conn.write(chunk.subarray(sent));
        }
      }
    }).catch(() => this.close());
    return promise;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer.
    }
  }

  async #readLoop(): Promise<void> {
    const chunk = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        this.#append(chunk.subarray(0, n));
        this.#drain();
      }
    } catch {
      // The connection failed; pending batches are rejected below.
    }
    this.close();
    for (const batch of this.#pending.splice(0)) {
      batch.reject(new Error("Cannot read from Redis: the connection closed"));
    }
  }

  #append(bytes: Uint8Array): void {
    if (this.#end + bytes.length > this.#buf.length) {
      const live = this.#end - this.#start;
      const size = Math.max(this.#buf.length, (live + bytes.length) * 2);
      const next = new Uint8Array(size);
      next.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = next;
      this.#start = 0;
      this.#end = live;
    }
    this.#buf.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  #drain(): void {
    while (this.#pending.length > 0) {
      const parsed = parseReply(this.#buf, this.#start, this.#end);
      if (!parsed) return;
      this.#start = parsed[1];
      const batch = this.#pending[0];
      batch.values.push(parsed[0]);
      if (batch.values.length === batch.count) {
        this.#pending.shift();
        batch.resolve(batch.values);
      }
    }
  }
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Converts a reply to Upstash's JSON: strings base64 when asked, except a top-level "OK". */
function toJson(value: RespValue, base64: boolean, top: boolean): unknown {
  if (value instanceof Uint8Array) return base64 ? value.toBase64() : decoder.decode(value);
  if (value instanceof RespError) return value.message;
  if (Array.isArray(value)) return value.map((item) => toJson(item, base64, false));
  if (typeof value === "string" && base64 && !(top && value === "OK")) {
    return encoder.encode(value).toBase64();
  }
  return value;
}

function slot(value: RespValue, base64: boolean): { result: unknown } | { error: string } {
  return value instanceof RespError
    ? { error: value.message }
    : { result: toJson(value, base64, true) };
}

/** Starts the proxy on a free loopback port, forwarding to the Redis at `redisUrl`. */
export function startUpstashProxy(
  options: { redisUrl: string; token: string },
): Promise<UpstashProxy> {
  const target = new URL(options.redisUrl);
  let connection: RespConnection | undefined;
  let commands = 0;
  let requests = 0;
  const byName = new Map<string, number>();
  const tally = (batch: string[][]) => {
    for (const command of batch) {
      const name = command[0].toUpperCase();
      const key = name === "EVALSHA" ? `EVALSHA ${command[1].slice(0, 8)}` : name;
      byName.set(key, (byName.get(key) ?? 0) + 1);
    }
  };
  let closing: Promise<void> | undefined;
  const pubsub = new PubSubEndpoints(
    { hostname: target.hostname, port: Number(target.port) },
    {
      bill: (n, name) => {
        commands += n;
        byName.set(name, (byName.get(name) ?? 0) + n);
      },
    },
  );

  async function forward(batch: Arg[][]): Promise<RespValue[]> {
    if (!connection || connection.closed) {
      const conn = await Deno.connect({ hostname: target.hostname, port: Number(target.port) });
      connection = new RespConnection(conn);
    }
    return await connection.send(batch);
  }

  async function execute(path: string, body: unknown, base64: boolean): Promise<Response> {
    if (path === "/") {
      const parsed = commandSchema.safeParse(body);
      if (!parsed.success) {
        return Response.json({ error: "ERR failed to parse command" }, { status: 400 });
      }
      const command = parsed.data.map(String);
      const refused = refusal(command);
      if (refused) return Response.json({ error: refused }, { status: 400 });
      commands += 1;
      tally([command]);
      const [reply] = await forward([command]);
      return Response.json(slot(reply, base64), { status: reply instanceof RespError ? 400 : 200 });
    }
    const parsed = pipelineSchema.safeParse(body);
    if (!parsed.success) {
      return Response.json({ error: "ERR failed to parse pipeline" }, { status: 400 });
    }
    const batch = parsed.data.map((command) => command.map(String));
    const refusals = batch.map(refusal);
    if (path === "/multi-exec") {
      const refused = refusals.find((r) => r !== undefined);
      if (refused) return Response.json({ error: refused }, { status: 400 });
      commands += batch.length;
      tally(batch);
      const replies = await forward([["MULTI"], ...batch, ["EXEC"]]);
      const exec = replies[replies.length - 1];
      if (Array.isArray(exec)) return Response.json(exec.map((reply) => slot(reply, base64)));
      // Discarded as a whole: report the first queuing error, else EXEC's own.
      const error = replies.find((r) => r instanceof RespError) as RespError | undefined;
      return Response.json({ error: error?.message ?? "EXECABORT Transaction discarded" }, {
        status: 400,
      });
    }
    const allowed = batch.filter((_, i) => refusals[i] === undefined);
    commands += allowed.length;
    tally(allowed);
    const replies = allowed.length > 0 ? await forward(allowed) : [];
    let next = 0;
    return Response.json(
      refusals.map((refused) => refused ? { error: refused } : slot(replies[next++], base64)),
    );
  }

  async function handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const auth = request.headers.get("authorization");
    const token = auth?.startsWith("Bearer ") ? auth.slice(7) : url.searchParams.get("_token");
    if (token !== options.token) return Response.json({ error: "Unauthorized" }, { status: 401 });
    if (request.method !== "POST") {
      return Response.json({ error: "ERR only POST is supported" }, { status: 405 });
    }
    if (/^\/(subscribe|publish)\//.test(url.pathname)) {
      requests += 1;
      return await pubsub.handle(url.pathname, request) ??
        Response.json({ error: "ERR unknown endpoint" }, { status: 404 });
    }
    if (!["/", "/pipeline", "/multi-exec"].includes(url.pathname)) {
      return Response.json({ error: "ERR unknown endpoint" }, { status: 404 });
    }
    requests += 1;
    let body: unknown;
    try {
      body = await request.json();
    } catch {
      return Response.json({ error: "ERR failed to parse the JSON body" }, { status: 400 });
    }
    const base64 = request.headers.get("upstash-encoding")?.toLowerCase() === "base64";
    try {
      return await execute(url.pathname, body, base64);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return Response.json({ error: `ERR ${message}` }, { status: 500 });
    }
  }

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handle);
  const proxy: UpstashProxy = {
    url: `http://127.0.0.1:${server.addr.port}`,
    get commands() {
      return commands;
    },
    get requests() {
      return requests;
    },
    byName,
    get subscribers() {
      return pubsub.subscribers;
    },
    dropSubscriptions() {
      pubsub.dropAll();
    },
    close() {
      closing ??= (async () => {
        pubsub.close();
        await server.shutdown().catch(() => {});
        connection?.close();
        await connection?.reading;
      })();
      return closing;
    },
  };
  return Promise.resolve(proxy);
}
