/**
 * Runs once before `deno task test`: installs redis-server with apt-get when it is missing and we are
 * root (otherwise stops with the exact command), so that parallel test files never race on apt-get.
 */
import { ensureRedisServer } from "./redis_server.ts";

if (import.meta.main) {
  try {
    await ensureRedisServer();
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(1);
  }
}
