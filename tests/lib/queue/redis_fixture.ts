/** A Redis broker on its own redis-server, over TCP or the Upstash REST proxy, for the broker tests. */
import { KeyLayout } from "../../../lib/queue/partitions.ts";
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import type { Broker } from "../../../lib/queue/types.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
import type { RedisClient } from "../../../lib/redis/types.ts";
import { createUpstashClient } from "../../../lib/redis/upstash.ts";
import { redisCommand, type RedisServer, startRedis } from "../../support/redis_server.ts";
import { startUpstashProxy } from "../../support/upstash_proxy.ts";
import type { ContractHooks } from "./broker_contract_helpers.ts";

/** A Redis broker on a fresh redis-server over one transport, with what tests reach around it. */
export interface RedisBrokerFixture {
  broker: Broker;
  server: RedisServer;
  prefix: string;
  hooks: ContractHooks;
  cleanup: () => Promise<void>;
}

/** Compares stream ids by time, then sequence. */
function byStreamId(a: string, b: string): number {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am === bm ? Number(as - bs) : Number(am - bm);
}

/**
 * Contract hooks that reach Redis directly: `command` runs one command, `keys` lists the keys matching
 * a pattern (on every master of a cluster). With N > 1, a seed entry goes to the intake and the broker's
 * mover spreads it at once, as a worker's mover loop would.
 */
export function redisHooks(
  command: (args: string[]) => Promise<unknown>,
  keys: (pattern: string) => Promise<string[]>,
  broker: Broker,
  layout: KeyLayout,
): ContractHooks {
  return {
    async addSeedEntry({ id, token, prompt }) {
      const args = ["XADD", layout.intake, "*", "Id", id, "Token", token, "Prompt", prompt];
      const entry = String(await command(args));
      if (layout.tagged) await broker.moveIntake("mover", { blockMs: 0, idleMs: 60_000 });
      return entry;
    },
    // Expiry cannot be fast-forwarded: every key that has one is deleted, as if its time had come.
    async passTtl() {
      for (const key of await keys(`${layout.prefix}*job:*`)) {
        if (Number(await command(["TTL", key])) > 0) await command(["DEL", key]);
      }
    },
    async deadReasons() {
      const all: [string, string][] = [];
      for (let p = 0; p < layout.partitions; p++) {
        const entries = await command(["XRANGE", layout.dead(p), "-", "+"]) as string[][][];
        for (const [id, fields] of entries) {
          all.push([String(id), fields[fields.indexOf("reason") + 1]]);
        }
      }
      return all.sort(([a], [b]) => byStreamId(a, b)).map(([, reason]) => reason);
    },
  };
}

/** Starts a redis-server and a broker with `partitions` partitions on it over `transport`. */
export async function redisBrokerFixture(
  transport: "tcp" | "upstash",
  partitions = 1,
): Promise<RedisBrokerFixture> {
  const server = await startRedis();
  const prefix = `t${crypto.randomUUID().slice(0, 8)}:`;
  const layout = new KeyLayout(prefix, partitions);
  const command = (args: string[]) => redisCommand(server.port, args);
  const keys = async (pattern: string) => await command(["KEYS", pattern]) as string[];
  let client: RedisClient;
  let closeProxy = () => Promise.resolve();
  if (transport === "tcp") {
    client = createTcpClient({ url: server.url });
  } else {
    const token = crypto.randomUUID();
    const proxy = await startUpstashProxy({ redisUrl: server.url, token });
    client = createUpstashClient({ url: proxy.url, token });
    closeProxy = () => proxy.close();
  }
  const kind = transport === "tcp" ? "redis" : "upstash";
  const broker = createRedisBroker(client, { prefix, kind, partitions, notices: true });
  const cleanup = async () => {
    await broker.close();
    await closeProxy();
    await server.stop();
  };
  const hooks = redisHooks(command, keys, broker, layout);
  return { broker, server, prefix, hooks, cleanup };
}
