/** The entrypoint: loads configuration, starts the runtime and the HTTP server, handles signals. */
import { getLogger } from "@logtape/logtape";
import { ConfigError, loadConfig } from "./lib/config.ts";
import { configureLogging } from "./lib/logging.ts";
import { startRuntime } from "./lib/runtime.ts";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(Deno.env.toObject());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(1);
  }
  await configureLogging({ level: config.LOG_LEVEL, pretty: config.devMode });
  const log = getLogger(["imagejobs"]);
  const runtime = await startRuntime(config, log);
  const server = Deno.serve({
    port: config.PORT,
    hostname: config.HOST,
    onListen: ({ hostname, port }) => {
      const line =
        `Listening on http://${hostname}:${port} (role ${config.ROLE}, broker ${config.broker})`;
      // Always printed, as Deno.serve does by default: with PORT=0 it is how you learn the port.
      if (log.isEnabledFor("info")) log.info(line);
      else console.log(line);
      if (runtime.devToken) {
        // Printed outside the logger on purpose: logs redact tokens, and this one is for you to copy.
        console.log(`DEV_MODE token (sub dev-user, 24 h):\n${runtime.devToken}`);
      }
    },
  }, runtime.app.fetch);

  // On Deno Deploy, a cron keeps leases and retries moving even when no request keeps an instance awake.
  if (typeof Deno.cron === "function" && runtime.worker) {
    const worker = runtime.worker;
    Deno.cron("sweep stalled leases and due retries", "* * * * *", () => worker.maintain());
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("{signal}: draining for up to {ms} ms", { signal, ms: config.DRAIN_TIMEOUT_MS });
    const hardStop = setTimeout(() => Deno.exit(0), config.DRAIN_TIMEOUT_MS + 3_000);
    await runtime.close();
    await server.shutdown();
    clearTimeout(hardStop);
    log.info("Stopped");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
}

if (import.meta.main) await main();
