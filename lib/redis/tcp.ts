/** The TCP transport: ioredis behind the small RedisClient interface. */
import { Buffer } from "node:buffer";
import { type ChainableCommander, Command, Redis, type RedisOptions, ReplyError } from "ioredis";
import { BrokerUnavailableError } from "../errors.ts";
import type {
  PipelineReply,
  RedisArg,
  RedisClient,
  RedisCommand,
  RedisReply,
  Script,
} from "./types.ts";
import { evalWithFallback } from "./types.ts";

/** Options of the TCP transport. */
export interface TcpClientOptions {
  url: string;
  /** Deadline of every non-blocking command, in ms. */
  commandTimeoutMs?: number;
  /** Called with connection errors (ioredis reconnects by itself). */
  onError?: (error: Error) => void;
}

function baseOptions(commandTimeoutMs: number): RedisOptions {
  return {
    lazyConnect: false,
    connectTimeout: Math.min(commandTimeoutMs, 5_000),
    commandTimeout: commandTimeoutMs,
    maxRetriesPerRequest: 1,
    enableAutoPipelining: true,
    // Reconnect forever with capped exponential backoff.
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
    reconnectOnError: (error: Error) => error.message.startsWith("READONLY"),
  };
}

/** A reply from the server stays as it is; anything else (closed, refused, timed out) means Redis is unreachable. */
export function classify(error: unknown): Error {
  if (error instanceof ReplyError || error instanceof BrokerUnavailableError) return error as Error;
  const message = error instanceof Error ? error.message : String(error);
  return new BrokerUnavailableError(`Cannot reach Redis: ${message}`, { cause: error });
}

/** Arguments as ioredis takes them: bytes as a Buffer over the same memory (it writes only Buffers raw). */
export function toArgs(args: readonly RedisArg[]): (string | Buffer)[] {
  return args.map((arg) =>
    typeof arg === "string" || Buffer.isBuffer(arg)
      ? arg
      : Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength)
  );
}

/**
 * Sends a command whose bulk-string replies stay Buffers: through the command's own `<name>Buffer`
 * method, which auto-pipelining batches correctly (ioredis 5 drops the name of a batched `callBuffer`),
 * except HGETALL, whose method would turn the reply into an object keyed by text.
 */
export async function callBytes(
  redis: Redis,
  name: string,
  args: (string | Buffer)[],
): Promise<RedisReply> {
  const lower = name.toLowerCase();
  const method = (redis as unknown as Record<string, unknown>)[`${lower}Buffer`];
  if (typeof method === "function" && lower !== "hgetall") {
    return await method.apply(redis, args) as RedisReply;
  }
  return await redis.sendCommand(new Command(name, args, { replyEncoding: null })) as RedisReply;
}

class TcpClient implements RedisClient {
  readonly binary = true;
  #redis: Redis;
  #options: TcpClientOptions;
  #children = new Set<TcpClient>();
  #isBlocking: boolean;
  #onClose: (() => void) | undefined;
  #closing: Promise<void> | null = null;

  constructor(options: TcpClientOptions, blocking = false, onClose?: () => void) {
    this.#options = options;
    this.#isBlocking = blocking;
    this.#onClose = onClose;
    const base = baseOptions(options.commandTimeoutMs ?? 3_000);
    this.#redis = new Redis(options.url, {
      ...base,
      // A blocking read must not be cut by the command deadline; callers bound it themselves.
      ...(blocking ? { commandTimeout: undefined, enableAutoPipelining: false } : {}),
    });
    this.#redis.on("error", (error: Error) => options.onError?.(error));
  }

  async send(command: RedisCommand): Promise<RedisReply> {
    const [name, ...args] = command;
    try {
      return await this.#redis.call(String(name), ...toArgs(args)) as RedisReply;
    } catch (error) {
      throw classify(error);
    }
  }

  async sendBytes(command: RedisCommand): Promise<RedisReply> {
    const [name, ...args] = command;
    try {
      return await callBytes(this.#redis, String(name), toArgs(args));
    } catch (error) {
      throw classify(error);
    }
  }

  async pipeline(commands: RedisCommand[]): Promise<PipelineReply[]> {
    if (commands.length === 0) return [];
    return await execPipeline(this.#redis.pipeline(), commands);
  }

  eval(script: Script, keys: string[], args: RedisArg[]): Promise<RedisReply> {
    return evalWithFallback((command) => this.send(command), script, { keys, args });
  }

  blocking(): RedisClient | null {
    const child: TcpClient = new TcpClient(this.#options, true, () => this.#children.delete(child));
    this.#children.add(child);
    return child;
  }

  close(): Promise<void> {
    this.#closing ??= closeConnection({
      children: this.#children,
      // A blocking connection may be inside a long read: drop it rather than wait for QUIT.
      quit: this.#isBlocking ? undefined : () => this.#redis.quit(),
      disconnect: () => this.#redis.disconnect(),
      onClose: this.#onClose,
      onError: this.#options.onError,
    });
    return this.#closing;
  }
}

/**
 * Closes a client's connection in order: its dedicated children, then QUIT (when given), then the
 * socket; reports what failed to `onError` and never throws.
 */
export async function closeConnection(
  { children, quit, disconnect, onClose, onError }: {
    children: Iterable<{ close(): Promise<void> }>;
    quit?: () => Promise<unknown>;
    disconnect: () => void;
    onClose?: () => void;
    onError?: (error: Error) => void;
  },
): Promise<void> {
  const results = await Promise.allSettled([
    ...[...children].map((child) => child.close()),
    quit ? quit() : Promise.resolve(),
  ]);
  disconnect();
  onClose?.();
  for (const result of results) {
    if (result.status === "rejected") onError?.(result.reason);
  }
}

/** Connects to a TCP Redis (`redis://` or `rediss://`); reconnects by itself with backoff. */
export function createTcpClient(options: TcpClientOptions): RedisClient {
  return new TcpClient(options);
}

/**
 * Runs `commands` on an ioredis pipeline in one round trip (through `bound`, e.g. a deadline); each
 * slot holds its reply, or its error classified as the seam's errors are.
 */
export async function execPipeline(
  pipe: ChainableCommander,
  commands: RedisCommand[],
  bound: <T>(sent: Promise<T>) => Promise<T> = (sent) => sent,
): Promise<PipelineReply[]> {
  for (const [name, ...args] of commands) pipe.call(String(name), ...toArgs(args));
  const results = await bound(pipe.exec()).catch((error) => {
    throw classify(error);
  }) ?? [];
  return results.map(([error, reply]) => error ? classify(error) : (reply as RedisReply));
}
