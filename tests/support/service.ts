/** Runs the real service (`deno run main.ts`) as a subprocess on a free port, for end-to-end tests. */

/** A service subprocess. */
export interface ServiceProcess {
  readonly url: string;
  readonly pid: number;
  /** Everything the process printed so far. */
  output(): string;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

/**
 * Starts `main.ts` with `env` (and `denoFlags` before the script, e.g. `--cpu-prof`) on PORT 0 (the kernel picks a free port, so parallel tests can never race
 * for one), reads the port from its "Listening on" log line, and waits until `/healthz` answers.
 */
export async function startService(
  env: Record<string, string>,
  { denoFlags = [] }: { denoFlags?: string[] } = {},
): Promise<ServiceProcess> {
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...denoFlags, "--allow-net", "--allow-env", "--allow-read", "--allow-sys", main],
    env: { PORT: "0", HOST: "127.0.0.1", NO_COLOR: "1", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const deadline = Date.now() + 30_000;
  let url = "";
  while (true) {
    if (exited) throw new Error(`Cannot start the service: it exited\n${text}`);
    const port = text.match(/Listening on http:\/\/[^\s:]+:(\d+)/)?.[1];
    if (port) {
      url = `http://127.0.0.1:${port}`;
      try {
        const res = await fetch(`${url}/healthz`);
        await res.body?.cancel();
        if (res.ok) break;
      } catch {
        // not answering yet
      }
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`Cannot start the service: no answer in 30 s\n${text}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  let stopped: Promise<number> | null = null;
  return {
    url,
    pid: child.pid,
    output: () => text,
    stop(signal = "SIGTERM") {
      stopped ??= (async () => {
        if (!exited) {
          try {
            child.kill(signal);
          } catch {
            // already gone
          }
        }
        const { code } = await status;
        await pumps;
        return code;
      })();
      return stopped;
    },
  };
}
