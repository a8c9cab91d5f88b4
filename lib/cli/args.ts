/** The command line of `deno task submit`: parsing, defaults from the environment, and `--help`. */
import { parseArgs } from "node:util";
import { CliError, EXIT } from "./errors.ts";

/** Service URL used when neither `--url` nor `IMAGE_JOBS_URL` is given. */
export const DEFAULT_URL = "http://127.0.0.1:8000";

/** The `--help` text. */
export const USAGE = `Usage: deno task submit "<prompt>" [options]

Submits an image job, shows its progress as it happens, and saves the image.

Options:
  -o, --out FILE         where to write the image (default: <job id>.<jpg|png|webp>)
      --url BASE         the service (default: $IMAGE_JOBS_URL, else ${DEFAULT_URL})
      --token JWT        bearer token (default: $IMAGE_JOBS_TOKEN; without one, a dev token
                         is fetched from a DEV_MODE service with POST /v1/dev/token)
      --aspect-ratio R   aspect ratio of the image, such as 16:9, 1:1 or auto
      --n N              how many images (1 to 10; with more than one they are written to
                         <job id>-<k>.<ext>, or FILE with -<k> before its extension)
      --image REF        edit this image instead of drawing from nothing (up to 3 times): a
                         FILE (JPEG, PNG or WebP, sent as a data: URL), an https:// URL, or
                         job:ID / job:ID#K (an image of one of your succeeded jobs)
  -h, --help             show this help

Ctrl-C cancels the job on the service (DELETE /v1/jobs/:id) before exiting.

Exit codes:
  0    the image was saved
  1    the job failed or was canceled, or the image could not be saved
  2    usage error
  3    authentication error: the token was refused, or no token and no DEV_MODE service
  4    the service refused the request (4xx: an invalid prompt, a rate limit, ...)
  5    the service is unreachable or answered 5xx
  130  interrupted by Ctrl-C (the job was canceled)
`;

/** What one run of the CLI does. */
export interface SubmitOptions {
  prompt: string;
  /** The service's base URL, without a trailing slash. */
  url: string;
  token?: string;
  out?: string;
  aspectRatio?: string;
  /** Images to ask for (1 to 10). */
  n?: number;
  /** Reference images as given: files, https:// URLs, `job:` references. */
  images?: string[];
}

/** The parsed command line: help, or a job to submit. */
export type ParsedArgs = { help: true } | { help: false; options: SubmitOptions };

/** A value from the environment, empty counting as unset. */
function fromEnv(env: (name: string) => string | undefined, name: string): string | undefined {
  const value = env(name)?.trim();
  return value ? value : undefined;
}

/** Checks that `url` is an http(s) URL and drops its trailing slashes. */
function checkedUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CliError(EXIT.usage, `Cannot use the URL: "${url}" is not a URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new CliError(EXIT.usage, `Cannot use the URL: "${url}" is not http or https`);
  }
  return url.replace(/\/+$/, "");
}

/** Parses the arguments; flags win over `IMAGE_JOBS_URL` and `IMAGE_JOBS_TOKEN`. */
export function parseSubmitArgs(
  args: string[],
  env: (name: string) => string | undefined,
): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        out: { type: "string", short: "o" },
        url: { type: "string" },
        token: { type: "string" },
        "aspect-ratio": { type: "string" },
        n: { type: "string" },
        image: { type: "string", multiple: true },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CliError(EXIT.usage, `Cannot read the arguments: ${reason}`, { cause: error });
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true };
  const prompt = positionals.join(" ").trim();
  if (!prompt) throw new CliError(EXIT.usage, "Cannot submit a job: the prompt is missing");
  if (values.out !== undefined && !values.out.trim()) {
    throw new CliError(EXIT.usage, "Cannot write the image: --out is empty");
  }
  const token = values.token?.trim() || fromEnv(env, "IMAGE_JOBS_TOKEN");
  const n = values.n === undefined ? undefined : checkedCount(values.n);
  const images = values.image;
  if (images !== undefined && (images.length > 3 || images.some((image) => !image.trim()))) {
    throw new CliError(EXIT.usage, "Cannot edit: give --image 1 to 3 times, each not empty");
  }
  return {
    help: false,
    options: {
      prompt,
      url: checkedUrl(values.url?.trim() || fromEnv(env, "IMAGE_JOBS_URL") || DEFAULT_URL),
      token,
      out: values.out,
      aspectRatio: values["aspect-ratio"],
      ...(n === undefined ? {} : { n }),
      ...(images === undefined ? {} : { images }),
    },
  };
}

/** The `--n` value as a whole number from 1 to 10. */
function checkedCount(text: string): number {
  if (!/^\d{1,2}$/.test(text.trim()) || Number(text) < 1 || Number(text) > 10) {
    throw new CliError(EXIT.usage, `Cannot ask for "${text}" images: --n must be 1 to 10`);
  }
  return Number(text);
}
