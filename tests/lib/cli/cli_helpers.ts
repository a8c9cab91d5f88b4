/** Helpers of the CLI tests: the CLI as a subprocess, and a proxy that can cut or refuse requests. */

const ROOT = new URL("../../../", import.meta.url).pathname;
const SCRIPT = `${ROOT}lib/cli/submit.ts`;

/** The permissions of `deno task submit`. */
export const TASK_PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write"];

/** The repository's deno.json. */
export const CONFIG = `${ROOT}deno.json`;

/** A running CLI process. */
export interface CliProcess {
  readonly pid: number;
  /** Resolves with all stdout so far once it matches `pattern` (rejects if the process ends first). */
  waitForStdout(pattern: RegExp): Promise<RegExpMatchArray>;
  kill(signal: Deno.Signal): void;
  /** The exit code and everything printed. */
  done: Promise<{ code: number; stdout: string; stderr: string }>;
}

/** Starts `deno <args>` in `cwd` with `env` on top of IMAGE_JOBS_URL/TOKEN set empty. */
export function spawnDeno(
  args: string[],
  { cwd, env = {} }: { cwd: string; env?: Record<string, string> },
): CliProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    // INIT_CWD is where `deno task` was typed; under `deno task test` it would name the repository.
    env: { NO_COLOR: "1", IMAGE_JOBS_URL: "", IMAGE_JOBS_TOKEN: "", INIT_CWD: cwd, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stdout = "";
  let stderr = "";
  const watchers = new Set<() => void>();
  const pump = async (stream: ReadableStream<Uint8Array>, into: (text: string) => void) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      into(text);
      for (const watch of [...watchers]) watch();
    }
  };
  const pumps = Promise.all([
    pump(child.stdout, (text) => stdout += text),
    pump(child.stderr, (text) => stderr += text),
  ]);
  const done = (async () => {
    const { code } = await child.status;
    await pumps;
    for (const watch of [...watchers]) watch();
    return { code, stdout, stderr };
  })();
  let ended = false;
  void done.then(() => ended = true);
  return {
    pid: child.pid,
    done,
    kill: (signal) => child.kill(signal),
    waitForStdout(pattern) {
      return new Promise((resolve, reject) => {
        const watch = () => {
          const match = stdout.match(pattern);
          if (match) {
            watchers.delete(watch);
            resolve(match);
          } else if (ended) {
            watchers.delete(watch);
            reject(new Error(`Cannot see ${pattern} in the output:\n${stdout}\n${stderr}`));
          }
        };
        watchers.add(watch);
        watch();
        void done.then(watch);
      });
    },
  };
}

/** Starts the CLI as the task line does (`deno run <permissions> lib/cli/submit.ts ...`). */
export function spawnCli(
  args: string[],
  options: { cwd: string; env?: Record<string, string> },
): CliProcess {
  return spawnDeno(["run", ...TASK_PERMISSIONS, SCRIPT, ...args], options);
}

/** Runs the CLI to its end. */
export function runCli(args: string[], options: { cwd: string; env?: Record<string, string> }) {
  return spawnCli(args, options).done;
}

/** A request the proxy saw. */
export interface SeenRequest {
  method: string;
  path: string;
  lastEventId: string | null;
}

/** A proxy on 127.0.0.1 in front of `target`; `intercept` may answer a request itself. */
export interface Proxy {
  readonly url: string;
  readonly seen: SeenRequest[];
  close(): Promise<void>;
}

/** Passes a response through until its first complete SSE event, then ends it (a dropped stream). */
export function cutAfterFirstEvent(
  response: Response,
  onCut: (sent: string) => void = () => {},
): Response {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await reader.read();
      if (done) return controller.close();
      text += decoder.decode(value, { stream: true });
      const end = text.indexOf("\n\n");
      if (end < 0) return controller.enqueue(value);
      controller.enqueue(new TextEncoder().encode(text.slice(0, end + 2)));
      onCut(text.slice(0, end + 2));
      controller.close();
      await reader.cancel();
    },
    cancel: () => reader.cancel(),
  });
  return new Response(body, { status: response.status, headers: response.headers });
}

/** Starts the proxy; `rewrite` may replace the upstream's answer (or answer alone when given none). */
export async function startProxy(
  target: string,
  rewrite: (seen: SeenRequest, upstream: () => Promise<Response>) => Promise<Response> = (
    _,
    upstream,
  ) => upstream(),
): Promise<Proxy> {
  const seen: SeenRequest[] = [];
  const listening = Promise.withResolvers<void>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => listening.resolve() },
    (request) => {
      const url = new URL(request.url);
      const entry = {
        method: request.method,
        path: url.pathname,
        lastEventId: request.headers.get("last-event-id"),
      };
      seen.push(entry);
      const upstream = async () => {
        const body = request.body ? await request.arrayBuffer() : undefined;
        return await fetch(`${target}${url.pathname}${url.search}`, {
          method: request.method,
          headers: request.headers,
          body,
        });
      };
      return rewrite(entry, upstream);
    },
  );
  await listening.promise;
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    seen,
    close: () => server.shutdown(),
  };
}

/** A 127.0.0.1 port nothing listens on (it was free a moment ago). */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
