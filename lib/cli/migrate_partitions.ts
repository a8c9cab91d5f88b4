/**
 * `JOB_PARTITIONS=<new> deno task migrate-partitions [--from=<old>]`: moves the deployment's jobs (in the
 * Redis that REDIS_URL, REDIS_CLUSTER_URLS or UPSTASH_REDIS_REST_URL names) to the new partition count.
 * Stop every process of the deployment first; start them again with the new JOB_PARTITIONS after.
 */
import { ConfigError, loadConfig } from "../config.ts";
import { migratePartitions, MigrationError } from "../queue/migrate_partitions.ts";
import { createClusterClient } from "../redis/cluster.ts";
import { createTcpClient } from "../redis/tcp.ts";
import type { RedisClient } from "../redis/types.ts";
import { createUpstashClient } from "../redis/upstash.ts";

/** What the command reads and writes, passed in so that tests and the entry point choose. */
export interface MigrateDeps {
  env: Record<string, string | undefined>;
  args: string[];
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** The Redis client of the configured broker, or null for the embedded one. */
function clientOf(config: ReturnType<typeof loadConfig>): RedisClient | null {
  if (config.broker === "cluster") return createClusterClient({ urls: config.REDIS_CLUSTER_URLS! });
  if (config.broker === "redis") return createTcpClient({ url: config.REDIS_URL! });
  if (config.broker === "upstash") {
    const url = config.UPSTASH_REDIS_REST_URL!;
    return createUpstashClient({ url, token: config.UPSTASH_REDIS_REST_TOKEN! });
  }
  return null;
}

/** Runs the migration; returns the exit code (0 done or nothing to do, 1 refused or failed). */
export async function runMigration(deps: MigrateDeps): Promise<number> {
  const fromArg = deps.args.find((arg) => arg.startsWith("--from="));
  const from = fromArg === undefined ? undefined : Number(fromArg.slice("--from=".length));
  if (from !== undefined && !(Number.isInteger(from) && from >= 1)) {
    deps.stderr("Cannot migrate partitions: --from must be a whole number of at least 1");
    return 1;
  }
  // The migration verifies no token: a key is filled in only when none is set.
  const keyed = deps.env.JWT_SECRET || deps.env.JWT_PUBLIC_KEY || deps.env.JWT_JWKS_URL;
  let config;
  try {
    config = loadConfig(keyed ? deps.env : { ...deps.env, JWT_SECRET: "unused-by-the-migration" });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    deps.stderr(error.message);
    return 1;
  }
  const client = clientOf(config);
  if (!client) {
    deps.stderr(
      "Cannot migrate partitions: no Redis is configured (the embedded broker keeps nothing between runs)",
    );
    return 1;
  }
  const told = new Set<string>();
  try {
    const report = await migratePartitions(client, {
      prefix: config.REDIS_PREFIX,
      to: config.JOB_PARTITIONS,
      from,
      cluster: config.broker === "cluster",
      leaseMs: config.JOB_LEASE_MS,
      onStep: (what) => {
        if (!told.has(what)) deps.stdout(`migrate-partitions: ${what}`); // each step once
        told.add(what);
      },
    });
    deps.stdout(
      report.migrated
        ? `Migrated JOB_PARTITIONS from ${report.from} to ${report.to}: ${JSON.stringify(report)}`
        : `Nothing to migrate: the jobs are laid out for JOB_PARTITIONS=${report.to}`,
    );
    return 0;
  } catch (error) {
    if (!(error instanceof MigrationError || error instanceof ConfigError)) throw error;
    deps.stderr(error.message);
    return 1;
  } finally {
    await client.close();
  }
}

if (import.meta.main) {
  const code = await runMigration({
    env: Deno.env.toObject(),
    args: Deno.args,
    stdout: (text) => console.log(text),
    stderr: (text) => console.error(text),
  });
  Deno.exit(code);
}
