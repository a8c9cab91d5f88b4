/** `deno task submit "<prompt>"`: submits a job, shows its progress live, and saves its image. */
import { resolve } from "node:path";
import { ApiClient } from "./api.ts";
import { type ParsedArgs, parseSubmitArgs, type SubmitOptions, USAGE } from "./args.ts";
import { CliError, EXIT, printable } from "./errors.ts";
import { JOB_ID } from "../queue/types.ts";
import { followJob } from "./follow.ts";
import { extensionOf, fetchImage } from "./image_file.ts";
import { Progress } from "./progress.ts";
import { nthFile, type ReadFile, referenceOf } from "./references.ts";

/** What the CLI reads and writes, passed in so that tests and the entry point choose. */
export interface SubmitDeps {
  env: (name: string) => string | undefined;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** True when stdout is a terminal: a live status line instead of plain lines. */
  isTerminal: boolean;
  /** The directory a relative `--out` (and the default file) is resolved against. */
  cwd: string;
  writeFile: (path: string, bytes: Uint8Array) => Promise<void>;
  /** Reads a `--image` file (default: Deno.readFile). */
  readFile?: ReadFile;
  /** Calls `listener` on each Ctrl-C until the returned function removes it. */
  onInterrupt: (listener: () => void) => () => void;
  fetch?: typeof fetch;
  now?: () => number;
}

/** The reason the run's signal carries after Ctrl-C. */
class Interrupted extends Error {
  override name = "Interrupted";
}

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

/** The message of anything thrown, safe to print (it may carry the service's text). */
function messageOf(error: unknown): string {
  return printable(error instanceof Error ? error.message : String(error));
}

/** Submits, follows, downloads and saves; `onJob` learns the job id as soon as there is one. */
async function submitAndSave(
  options: SubmitOptions,
  { client, deps, progress, signal, onJob }: {
    client: ApiClient;
    deps: SubmitDeps;
    progress: Progress;
    signal: AbortSignal;
    onJob: (id: string) => void;
  },
): Promise<void> {
  if (!client.token) {
    client.token = await client.devToken();
    progress.line(`Using a dev token from ${options.url} (DEV_MODE)`);
  }
  signal.throwIfAborted();
  const read = deps.readFile ?? ((path: string) => Deno.readFile(path));
  const images = options.images === undefined ? undefined : await Promise.all(
    options.images.map((value) => referenceOf(value, (path) => read(resolve(deps.cwd, path)))),
  );
  // Not abortable: a job created by a submit cut short would be one nobody can cancel.
  const job = await client.submit({
    prompt: options.prompt,
    aspect_ratio: options.aspectRatio,
    n: options.n,
    images,
  });
  // The id names files here: only an id of the contract's pattern (no slash, no control character).
  if (typeof job.id !== "string" || !JOB_ID.test(job.id)) {
    throw new CliError(
      EXIT.unreachable,
      "Cannot follow the job: the service sent an invalid job id",
    );
  }
  onJob(job.id);
  progress.line(`Submitted job ${job.id} to ${options.url}`);
  signal.throwIfAborted();
  const end = await followJob({
    client,
    id: job.id,
    eventsPath: job.urls?.events,
    signal,
    onState: (state, detail) => progress.state(state, { detail, waiting: !TERMINAL.has(state) }),
  });
  if (end.type !== "succeeded") {
    const reason = end.error ?? `the job was ${end.type}`;
    throw new CliError(
      EXIT.jobFailed,
      `Cannot get the image: job ${job.id} ${end.type}: ${reason}`,
    );
  }
  const links = (options.n ?? 1) > 1 ? (await client.job(job.id, signal)).result?.images : [];
  if (links && links.length > 1) {
    // Several images: each from its own route, to <id>-<k>.<ext>.
    for (let k = 0; k < links.length; k++) {
      const image = await client.image(job.id, signal, k);
      if (!image) throw new CliError(EXIT.unreachable, `Cannot get image ${k} of job ${job.id}`);
      const file = nthFile(options.out, job.id, k, extensionOf(image.mimeType));
      await save(deps, progress, file, image);
    }
    return;
  }
  const image = await fetchImage(client, job.id, { dataUrl: end.image, signal });
  await save(deps, progress, options.out ?? `${job.id}.${extensionOf(image.mimeType)}`, image);
}

/** Writes one image to `shown` (relative to the working directory) and says so. */
async function save(
  deps: SubmitDeps,
  progress: Progress,
  shown: string,
  image: { bytes: Uint8Array; mimeType: string },
): Promise<void> {
  try {
    await deps.writeFile(resolve(deps.cwd, shown), image.bytes);
  } catch (error) {
    throw new CliError(EXIT.jobFailed, `Cannot save the image to ${shown}: ${messageOf(error)}`, {
      cause: error,
    });
  }
  progress.line(`Saved ${shown} (${image.bytes.byteLength} bytes, ${image.mimeType})`);
}

/** After Ctrl-C: cancels the job on the service (a second Ctrl-C stops waiting) and says so. */
async function cancelAfterInterrupt(
  client: ApiClient,
  { deps, id, forced }: { deps: SubmitDeps; id?: string; forced: Promise<void> },
): Promise<number> {
  if (id === undefined) {
    deps.stderr("Interrupted before any job was submitted\n");
    return EXIT.interrupted;
  }
  try {
    const outcome = await Promise.race([client.cancel(id), forced.then(() => "forced" as const)]);
    if (outcome === "forced") deps.stderr(`Interrupted again: job ${id} may still run\n`);
    else if (outcome) deps.stderr(`Interrupted: job ${id} canceled on the service\n`);
    else deps.stderr(`Interrupted: job ${id} had already ended\n`);
  } catch (error) {
    deps.stderr(`Interrupted: cannot cancel job ${id}: ${messageOf(error)}\n`);
  }
  return EXIT.interrupted;
}

/** Runs the CLI with `args` and returns its exit code. */
export async function runSubmit(args: string[], deps: SubmitDeps): Promise<number> {
  let parsed: ParsedArgs;
  try {
    parsed = parseSubmitArgs(args, deps.env);
  } catch (error) {
    deps.stderr(`${messageOf(error)}\nRun with --help for the usage.\n`);
    return EXIT.usage;
  }
  if (parsed.help) {
    deps.stdout(USAGE);
    return EXIT.ok;
  }
  const options = parsed.options;
  const interrupt = new AbortController();
  const forced = Promise.withResolvers<void>();
  const stopListening = deps.onInterrupt(() => {
    if (interrupt.signal.aborted) forced.resolve();
    else interrupt.abort(new Interrupted("Cannot go on: interrupted"));
  });
  const progress = new Progress({ write: deps.stdout, tty: deps.isTerminal, now: deps.now });
  const client = new ApiClient({ baseUrl: options.url, token: options.token, fetch: deps.fetch });
  let id: string | undefined;
  try {
    await submitAndSave(options, {
      client,
      deps,
      progress,
      signal: interrupt.signal,
      onJob: (jobId) => id = jobId,
    });
    return EXIT.ok;
  } catch (error) {
    progress.stop();
    if (interrupt.signal.aborted) {
      return await cancelAfterInterrupt(client, { deps, id, forced: forced.promise });
    }
    deps.stderr(`${messageOf(error)}\n`);
    return error instanceof CliError ? error.exitCode : EXIT.jobFailed;
  } finally {
    progress.stop();
    stopListening();
  }
}

/** Writes all of `bytes` to `file`, however many writes that takes. */
function writeAllSync(file: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += file.writeSync(bytes.subarray(done));
}

/** The real terminal, environment and file system. */
export function systemDeps(): SubmitDeps {
  const encoder = new TextEncoder();
  return {
    env: (name) => Deno.env.get(name),
    stdout: (text) => writeAllSync(Deno.stdout, encoder.encode(text)),
    stderr: (text) => writeAllSync(Deno.stderr, encoder.encode(text)),
    isTerminal: Deno.stdout.isTerminal(),
    // `deno task` runs in the config's directory; INIT_CWD is where the user typed the command.
    cwd: Deno.env.get("INIT_CWD") || Deno.cwd(),
    writeFile: (path, bytes) => Deno.writeFile(path, bytes),
    onInterrupt(listener) {
      Deno.addSignalListener("SIGINT", listener);
      return () => Deno.removeSignalListener("SIGINT", listener);
    },
  };
}

if (import.meta.main) {
  Deno.exit(await runSubmit(Deno.args, systemDeps()));
}
