/**
 * Runs once before `deno task test`: installs what the tests need from Debian when it is missing and
 * we are root (redis-server, and chromium for the browser tests), and s3rver from npm (the S3-compatible
 * server of the image store's tests), otherwise stops with the exact command, so that parallel test
 * files never race on apt-get or npm.
 */
import { ensureRedisServer } from "./redis_server.ts";
import { ensureS3rver } from "./s3_server.ts";

const CHROMIUM = "/usr/bin/chromium";

async function hasChromium(): Promise<boolean> {
  try {
    return (await Deno.stat(CHROMIUM)).isFile;
  } catch {
    return false;
  }
}

async function run(cmd: string, args: string[]): Promise<void> {
  const status = await new Deno.Command(cmd, { args, stdin: "null" }).spawn().status;
  if (!status.success) throw new Error(`Cannot run ${cmd} ${args.join(" ")}: exit ${status.code}`);
}

/** Installs Debian's chromium with apt-get when it is missing and we are root; throws otherwise. */
export async function ensureChromium(): Promise<void> {
  if (await hasChromium()) return;
  if (Deno.uid() !== 0) {
    throw new Error(
      "Cannot run the browser tests: chromium is not installed; run `sudo apt-get install -y chromium`",
    );
  }
  await run("apt-get", ["update"]);
  await run("apt-get", ["install", "-y", "chromium"]);
  if (!(await hasChromium())) {
    throw new Error(
      "Cannot run the browser tests: chromium is still missing after apt-get install",
    );
  }
}

if (import.meta.main) {
  try {
    await ensureRedisServer();
    await ensureChromium();
    await ensureS3rver();
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(1);
  }
}
