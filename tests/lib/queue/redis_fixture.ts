/** A Redis broker on its own redis-server, over TCP or the Upstash REST proxy, for the broker tests. */
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import type { Broker } from "../../../lib/queue/types.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
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

/** Contract hooks that reach the server directly. */
function redisHooks(server: RedisServer, prefix: string): ContractHooks {
  const command = (args: string[]) => redisCommand(server.port, args);
  return {
    async addSeedEntry({ id, token, prompt }) {
      const args = ["XADD", `${prefix}jobs`, "*", "Id", id, "Token", token, "Prompt", prompt];
      return String(await command(args));
    },
    // Expiry cannot be fast-forwarded: every key that has one is deleted, as if its time had come.
    async passTtl() {
      const keys = await command(["KEYS", `${prefix}job:*`]) as string[];
      for (const key of keys) {
        if (Number(await command(["TTL", key])) > 0) await command(["DEL", key]);
      }
    },
    async deadReasons() {
      const entries = await command(["XRANGE", `${prefix}jobs:dead`, "-", "+"]) as string[][][];
      return entries.map(([, fields]) => fields[fields.indexOf("reason") + 1]);
    },
  };
}

/** Starts a redis-server and a broker on it over `transport`. */
export async function redisBrokerFixture(
  transport: "tcp" | "upstash",
): Promise<RedisBrokerFixture> {
  const server = await startRedis();
  const prefix = `t${crypto.randomUUID().slice(0, 8)}:`;
  if (transport === "tcp") {
    const broker = createRedisBroker(createTcpClient({ url: server.url }), { prefix });
    const cleanup = async () => {
      await broker.close();
      await server.stop();
    };
    return { broker, server, prefix, hooks: redisHooks(server, prefix), cleanup };
  }
  const token = crypto.randomUUID();
  const proxy = await startUpstashProxy({ redisUrl: server.url, token });
  const client = createUpstashClient({ url: proxy.url, token });
  const broker = createRedisBroker(client, { prefix, kind: "upstash" });
  const cleanup = async () => {
    await broker.close();
    await proxy.close();
    await server.stop();
  };
  return { broker, server, prefix, hooks: redisHooks(server, prefix), cleanup };
}
