/** A real redis-server for tests, plus a tiny raw RESP2 client to talk to it. */

/** A redis-server started for a test, on its own loopback port and temp dir. */
export interface RedisServer {
  /** `redis://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
  /** The pid of the current process (changes on restart). */
  readonly pid: number;
  /** The temp dir holding the data and `redis.log`. */
  readonly dir: string;
  /** Kills the process by pid and waits until it has exited. */
  kill(signal?: Deno.Signal): Promise<void>;
  /** Starts it again on the same port and dir, once it answers PING. */
  restart(): Promise<void>;
  /** Kills it, waits, and removes the temp dir; idempotent. */
  stop(): Promise<void>;
}

/** A RESP2 value: simple string, bulk bytes, integer, nil, error or array. */
export type RespValue = string | Uint8Array | number | null | RespError | RespValue[];

/** An error reply from Redis. */
export class RespError extends Error {
  override name = "RespError";
}

const READY_TIMEOUT_MS = 10_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let ensured: Promise<void> | undefined;

async function hasRedisServer(): Promise<boolean> {
  try {
    const out = await new Deno.Command("redis-server", { args: ["--version"], stdout: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

async function run(cmd: string, args: string[]): Promise<void> {
  const status = await new Deno.Command(cmd, { args, stdin: "null" }).spawn().status;
  if (!status.success) throw new Error(`Cannot run ${cmd} ${args.join(" ")}: exit ${status.code}`);
}

/** Installs redis-server with apt-get when it is missing and we are root; throws otherwise. */
export function ensureRedisServer(): Promise<void> {
  ensured ??= (async () => {
    if (await hasRedisServer()) return;
    if (Deno.uid() !== 0) {
      throw new Error(
        "Cannot start redis-server: it is not installed; run `sudo apt-get install -y redis-server`",
      );
    }
    await run("apt-get", ["update"]);
    await run("apt-get", ["install", "-y", "redis-server"]);
    if (!(await hasRedisServer())) {
      throw new Error("Cannot start redis-server: it is still missing after apt-get install");
    }
  })();
  ensured.catch(() => ensured = undefined);
  return ensured;
}

function freePort(): number {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function logTail(dir: string): Promise<string> {
  try {
    return (await Deno.readTextFile(`${dir}/redis.log`)).split("\n").slice(-15).join("\n");
  } catch {
    return "(no log)";
  }
}

async function pingOnce(port: number): Promise<boolean> {
  try {
    return (await redisCommand(port, ["PING"])) === "PONG";
  } catch {
    return false;
  }
}

function spawnRedis(port: number, dir: string, appendonly: boolean): Deno.ChildProcess {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""];
  args.push("--appendonly", appendonly ? "yes" : "no", "--appendfsync", "always");
  args.push("--daemonize", "no", "--logfile", `${dir}/redis.log`);
  return new Deno.Command("redis-server", { args, stdin: "null", stdout: "null", stderr: "null" })
    .spawn();
}

class TestRedis implements RedisServer {
  readonly port: number;
  readonly dir: string;
  readonly #appendonly: boolean;
  #child: Deno.ChildProcess | undefined;
  #exited = true;
  #stopping: Promise<void> | undefined;

  constructor(port: number, dir: string, appendonly: boolean) {
    this.port = port;
    this.dir = dir;
    this.#appendonly = appendonly;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    if (!this.#child) throw new Error("Cannot read the pid: redis-server was never started");
    return this.#child.pid;
  }

  async start(): Promise<void> {
    const child = spawnRedis(this.port, this.dir, this.#appendonly);
    this.#child = child;
    this.#exited = false;
    child.status.then(() => this.#exited = true);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.#exited) break;
      // The PONG must come from our process: another test's server may hold the port we picked.
      if (await pingOnce(this.port)) {
        if (await this.#answersAsOurs(child.pid)) return;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const why = this.#exited
      ? "it exited"
      : Date.now() < deadline
      ? "the port answers for another process"
      : `no PONG within ${READY_TIMEOUT_MS} ms`;
    await this.kill();
    throw new Error(
      `Cannot start redis-server on port ${this.port}: ${why}\n${await logTail(this.dir)}`,
    );
  }

  async #answersAsOurs(pid: number): Promise<boolean> {
    try {
      const info = String(await redisCommand(this.port, ["INFO", "server"]));
      return info.match(/process_id:(\d+)/)?.[1] === String(pid);
    } catch {
      return false;
    }
  }

  async kill(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (!child) return;
    if (!this.#exited) {
      try {
        Deno.kill(child.pid, signal);
      } catch {
        // It exited in the meantime.
      }
    }
    await child.status;
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.kill();
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    })();
    return this.#stopping;
  }
}

/** Starts a redis-server on a free loopback port with a fresh temp dir. */
export async function startRedis(options: { appendonly?: boolean } = {}): Promise<RedisServer> {
  await ensureRedisServer();
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = await Deno.makeTempDir({ prefix: "redis_test_" });
    const server = new TestRedis(freePort(), dir, options.appendonly ?? false);
    try {
      await server.start();
      return server;
    } catch (error) {
      lastError = error;
      await server.stop();
    }
  }
  throw lastError;
}

/** Encodes one command as a RESP2 array of bulk strings. */
export function encodeCommand(args: readonly (string | Uint8Array)[]): Uint8Array {
  const parts: Uint8Array[] = [encoder.encode(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = typeof arg === "string" ? encoder.encode(arg) : arg;
    parts.push(encoder.encode(`$${bytes.length}\r\n`), bytes, encoder.encode("\r\n"));
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function lineEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = from; i + 1 < end; i++) if (buf[i] === 13 && buf[i + 1] === 10) return i;
  return -1;
}

/** Parses one RESP2 reply in buf[pos, end); undefined when it is not complete yet. */
export function parseReply(
  buf: Uint8Array,
  pos: number,
  end: number,
): [RespValue, number] | undefined {
  const eol = lineEnd(buf, pos + 1, end);
  if (pos >= end || eol < 0) return undefined;
  const line = decoder.decode(buf.subarray(pos + 1, eol));
  const next = eol + 2;
  switch (buf[pos]) {
    case 43: // +
      return [line, next];
    case 45: // -
      return [new RespError(line), next];
    case 58: // :
      return [Number(line), next];
    case 36: { // $
      const length = Number(line);
      if (length < 0) return [null, next];
      if (next + length + 2 > end) return undefined;
      return [buf.slice(next, next + length), next + length + 2];
    }
    case 42: { // *
      const count = Number(line);
      if (count < 0) return [null, next];
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const parsed = parseReply(buf, at, end);
        if (!parsed) return undefined;
        items.push(parsed[0]);
        at = parsed[1];
      }
      return [items, at];
    }
    default:
      throw new Error(`Cannot parse the reply: unexpected type byte ${buf[pos]}`);
  }
}

/** Turns bulk bytes into UTF-8 strings, recursively. */
export function toText(value: RespValue): unknown {
  if (value instanceof Uint8Array) return decoder.decode(value);
  if (Array.isArray(value)) return value.map(toText);
  return value;
}

/** Sends one command over a fresh TCP connection; rejects on an error reply. */
export async function redisCommand(port: number, args: string[]): Promise<unknown> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const request = encodeCommand(args);
    for (let sent = 0; sent < request.length;) sent += await conn.write(request.subarray(sent));
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(64 * 1024);
    while (true) {
      const parsed = parseReply(buf, 0, buf.length);
      if (parsed) {
        if (parsed[0] instanceof RespError) throw parsed[0];
        return toText(parsed[0]);
      }
      const n = await conn.read(chunk);
      if (n === null) throw new Error("Cannot read the reply: the connection closed");
      const grown = new Uint8Array(buf.length + n);
      grown.set(buf);
      grown.set(chunk.subarray(0, n), buf.length);
      buf = grown;
    }
  } finally {
    conn.close();
  }
}
