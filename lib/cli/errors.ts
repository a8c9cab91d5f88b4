/** Exit codes of the CLI and the one error class that carries them. */

/** Exit codes of `deno task submit`, as `--help` documents them. */
export const EXIT = {
  ok: 0,
  jobFailed: 1,
  usage: 2,
  auth: 3,
  refused: 4,
  unreachable: 5,
  interrupted: 130,
} as const;

/**
 * Text from the service made safe to print: control characters (escape sequences that could move the
 * cursor, rewrite the screen or the terminal's title, newlines that could fake lines) are dropped.
 */
export function printable(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, "");
}

/** A failure the CLI reports with its message and ends with its exit code. */
export class CliError extends Error {
  override name = "CliError";
  readonly exitCode: number;

  constructor(exitCode: number, message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.exitCode = exitCode;
  }
}

/** The message of the contract's error body, or the start of a body that is something else. */
async function serverMessage(response: Response): Promise<string> {
  const text = await response.text().catch(() => "");
  try {
    const message = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message;
    if (typeof message === "string") return message;
  } catch {
    // not JSON: show the text itself
  }
  return text.trim().slice(0, 200) || response.statusText || "no details";
}

/** Turns a non-2xx answer into a CliError: 401 → auth, 5xx → unreachable, other 4xx → refused. */
export async function responseError(response: Response, action: string): Promise<CliError> {
  const status = response.status;
  const detail = `${status}: ${await serverMessage(response)}`;
  if (status === 401 || status === 403) {
    return new CliError(
      EXIT.auth,
      `Cannot ${action}: the token was refused (${detail}); pass --token JWT or set IMAGE_JOBS_TOKEN`,
    );
  }
  if (status === 429) {
    const wait = response.headers.get("retry-after");
    const hint = wait ? `, try again in ${wait} s` : "";
    return new CliError(EXIT.refused, `Cannot ${action}: rate limited${hint} (${detail})`);
  }
  if (status >= 500) {
    return new CliError(EXIT.unreachable, `Cannot ${action}: the service failed (${detail})`);
  }
  return new CliError(EXIT.refused, `Cannot ${action}: the service refused it (${detail})`);
}
