/** A real Redis Cluster for tests: N masters on loopback, created with redis-cli, with slot migration. */
import { keySlot, SLOT_COUNT } from "../../lib/redis/slot.ts";
import { ensureRedisServer, redisCommand } from "./redis_server.ts";

/** One master of a test cluster. */
export interface ClusterNode {
  readonly port: number;
  readonly pid: number;
  /** `redis://127.0.0.1:PORT`. */
  readonly url: string;
  /** The node's cluster id (`CLUSTER MYID`). */
  readonly id: string;
  /** The temp dir holding `nodes.conf` and `redis.log`. */
  readonly dir: string;
}

/** A slot migration under way: the source answers ASK for the keys already moved. */
export interface SlotMigration {
  /** Moves these keys (default: every key still on the source) to the target with MIGRATE. */
  moveKeys(keys?: string[]): Promise<void>;
  /** Moves the remaining keys and assigns the slot to the target on every node. */
  finish(): Promise<void>;
}

/** A running test cluster. */
export interface RedisCluster {
  /** Seed URLs, one per master, for REDIS_CLUSTER_URLS. */
  readonly urls: string[];
  readonly nodes: ClusterNode[];
  /** The slots `node` serves now, ascending (asked of the node itself). */
  slotsOf(node: ClusterNode): Promise<number[]>;
  /** The node that serves `slot` now. */
  nodeOfSlot(slot: number): Promise<ClusterNode>;
  /** The node that serves `key` now. */
  nodeOfKey(key: string): Promise<ClusterNode>;
  /** Starts moving `slot` to `to` (IMPORTING / MIGRATING) and moves no key yet. */
  beginMigration(slot: number, to: ClusterNode): Promise<SlotMigration>;
  /** Moves `slot` and its keys to `to`, then assigns it there on every node. */
  migrateSlot(slot: number, to: ClusterNode): Promise<void>;
  /** Kills every server by pid, waits for each, and removes the temp dirs; idempotent. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
const BUS_PORT_OFFSET = 10_000;

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`Cannot start the Redis Cluster: ${what} within ${READY_TIMEOUT_MS} ms`);
}

function canListen(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/** Ports below the ephemeral range whose cluster bus port (+10000) is free as well. */
function freeClusterPorts(count: number): number[] {
  const ports = new Set<number>();
  while (ports.size < count) {
    const port = 10_000 + Math.floor(Math.random() * 12_000);
    if (canListen(port) && canListen(port + BUS_PORT_OFFSET)) ports.add(port);
  }
  return [...ports];
}

function spawnNode(port: number, dir: string): Deno.ChildProcess {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir];
  args.push("--cluster-enabled", "yes", "--cluster-config-file", `${dir}/nodes.conf`);
  args.push("--cluster-node-timeout", "5000", "--appendonly", "no", "--save", "");
  args.push("--daemonize", "no", "--logfile", `${dir}/redis.log`);
  return new Deno.Command("redis-server", { args, stdin: "null", stdout: "null", stderr: "null" })
    .spawn();
}

async function serverPid(port: number): Promise<number | undefined> {
  const info = String(await redisCommand(port, ["INFO", "server"]));
  const pid = info.match(/process_id:(\d+)/)?.[1];
  return pid === undefined ? undefined : Number(pid);
}

async function clusterInfo(port: number): Promise<Record<string, string>> {
  const text = String(await redisCommand(port, ["CLUSTER", "INFO"]));
  return Object.fromEntries(text.split("\r\n").filter(Boolean).map((line) => line.split(":")));
}

type SlotRange = [start: number, end: number, port: number];

async function slotRanges(port: number): Promise<SlotRange[]> {
  const reply = await redisCommand(port, ["CLUSTER", "SLOTS"]) as unknown[][];
  return reply.map((row) => [Number(row[0]), Number(row[1]), Number((row[2] as unknown[])[1])]);
}

class TestCluster implements RedisCluster {
  readonly nodes: ClusterNode[] = [];
  readonly #children: Deno.ChildProcess[] = [];
  readonly #dirs: string[] = [];
  #stopping: Promise<void> | undefined;

  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  async start(masters: number): Promise<void> {
    const ports = freeClusterPorts(masters);
    for (const port of ports) {
      const dir = await Deno.makeTempDir({ prefix: "redis_cluster_test_" });
      this.#dirs.push(dir);
      this.#children.push(spawnNode(port, dir));
    }
    await Promise.all(ports.map(async (port, i) => {
      const pid = this.#children[i].pid;
      await waitFor(
        `no PONG from our server on port ${port}`,
        async () => (await serverPid(port)) === pid,
      );
      const id = String(await redisCommand(port, ["CLUSTER", "MYID"]));
      this.nodes.push({ port, pid, url: `redis://127.0.0.1:${port}`, id, dir: this.#dirs[i] });
    }));
    this.nodes.sort((a, b) => ports.indexOf(a.port) - ports.indexOf(b.port));
    await this.#create();
    await waitFor("cluster_state:ok on every node", async () => {
      for (const node of this.nodes) {
        const info = await clusterInfo(node.port);
        if (info.cluster_state !== "ok" || info.cluster_known_nodes !== String(masters)) {
          return false;
        }
        const covered = (await slotRanges(node.port)).reduce((n, [a, b]) => n + b - a + 1, 0);
        if (covered !== SLOT_COUNT) return false;
      }
      return true;
    });
  }

  async #create(): Promise<void> {
    const args = ["--cluster", "create", ...this.nodes.map((node) => `127.0.0.1:${node.port}`)];
    args.push("--cluster-replicas", "0", "--cluster-yes");
    const out = await new Deno.Command("redis-cli", { args, stdin: "null" }).output();
    if (!out.success) {
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      throw new Error(`Cannot create the Redis Cluster: redis-cli exited ${out.code}\n${text}`);
    }
  }

  #byPort(port: number): ClusterNode {
    const node = this.nodes.find((candidate) => candidate.port === port);
    if (!node) throw new Error(`Cannot find the node: no master listens on port ${port}`);
    return node;
  }

  async slotsOf(node: ClusterNode): Promise<number[]> {
    const slots: number[] = [];
    for (const [start, end, port] of await slotRanges(node.port)) {
      if (port !== node.port) continue;
      for (let slot = start; slot <= end; slot++) slots.push(slot);
    }
    return slots.sort((a, b) => a - b);
  }

  async nodeOfSlot(slot: number): Promise<ClusterNode> {
    const range = (await slotRanges(this.nodes[0].port)).find(([a, b]) => a <= slot && slot <= b);
    if (!range) throw new Error(`Cannot find the node: slot ${slot} is not served`);
    return this.#byPort(range[2]);
  }

  nodeOfKey(key: string): Promise<ClusterNode> {
    return this.nodeOfSlot(keySlot(key));
  }

  async beginMigration(slot: number, to: ClusterNode): Promise<SlotMigration> {
    const from = await this.nodeOfSlot(slot);
    if (from.port === to.port) throw new Error(`Cannot migrate slot ${slot}: it is already there`);
    await redisCommand(to.port, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", from.id]);
    await redisCommand(from.port, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", to.id]);
    const moveKeys = async (keys?: string[]) => {
      while (true) {
        const batch = keys ?? await redisCommand(from.port, [
          "CLUSTER",
          "GETKEYSINSLOT",
          String(slot),
          "100",
        ]) as string[];
        if (batch.length === 0) return;
        const head = ["MIGRATE", "127.0.0.1", String(to.port), "", "0", "5000", "KEYS"];
        await redisCommand(from.port, [...head, ...batch]);
        if (keys) return;
      }
    };
    const finish = async () => {
      await moveKeys();
      // The target first, then the source, then the rest, as redis-cli --cluster reshard does.
      const order = [to, from, ...this.nodes.filter((n) => n !== to && n.port !== from.port)];
      for (const node of order) {
        await redisCommand(node.port, ["CLUSTER", "SETSLOT", String(slot), "NODE", to.id]);
      }
    };
    return { moveKeys, finish };
  }

  async migrateSlot(slot: number, to: ClusterNode): Promise<void> {
    await (await this.beginMigration(slot, to)).finish();
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      for (const child of this.#children) {
        try {
          Deno.kill(child.pid, "SIGKILL");
        } catch {
          // It exited already.
        }
      }
      await Promise.allSettled(this.#children.map((child) => child.status));
      await Promise.allSettled(this.#dirs.map((dir) => Deno.remove(dir, { recursive: true })));
    })();
    return this.#stopping;
  }
}

async function hasRedisCli(): Promise<boolean> {
  try {
    return (await new Deno.Command("redis-cli", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/**
 * Starts a Redis Cluster of `masters` masters (no replicas) on free loopback ports, each in its own
 * temp dir, and resolves once every node reports cluster_state:ok and sees every slot served.
 */
export async function startRedisCluster(
  { masters = 3 }: { masters?: number } = {},
): Promise<RedisCluster> {
  if (!Number.isInteger(masters) || masters < 3) {
    throw new RangeError("Cannot start a Redis Cluster: redis-cli needs at least 3 masters");
  }
  await ensureRedisServer(); // redis-server depends on redis-tools, which brings redis-cli.
  if (!(await hasRedisCli())) {
    throw new Error(
      "Cannot start a Redis Cluster: redis-cli is missing; apt-get install redis-tools",
    );
  }
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const cluster = new TestCluster();
    try {
      await cluster.start(masters);
      return cluster;
    } catch (error) {
      lastError = error;
      await cluster.stop();
    }
  }
  throw lastError;
}
