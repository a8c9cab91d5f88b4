/** The CLI's command line: flags, environment defaults and usage errors. */
import assert from "node:assert/strict";
import { DEFAULT_URL, parseSubmitArgs, USAGE } from "../../../lib/cli/args.ts";
import { CliError, EXIT } from "../../../lib/cli/errors.ts";

const noEnv = () => undefined;

function usageError(args: string[], pattern: RegExp) {
  assert.throws(
    () => parseSubmitArgs(args, noEnv),
    (error) =>
      error instanceof CliError && error.exitCode === EXIT.usage && pattern.test(error.message),
  );
}

Deno.test("parseSubmitArgs reads flags, then the environment, then defaults", async (t) => {
  await t.step("flags", () => {
    const parsed = parseSubmitArgs(
      [
        "a fox",
        "--out",
        "f.png",
        "--url",
        "http://127.0.0.1:9/",
        "--token",
        "t",
        "--aspect-ratio",
        "16:9",
      ],
      noEnv,
    );
    assert.deepEqual(parsed, {
      help: false,
      options: {
        prompt: "a fox",
        out: "f.png",
        url: "http://127.0.0.1:9",
        token: "t",
        aspectRatio: "16:9",
      },
    });
  });
  await t.step("IMAGE_JOBS_URL and IMAGE_JOBS_TOKEN when the flags are absent", () => {
    const env = { IMAGE_JOBS_URL: "http://127.0.0.1:7", IMAGE_JOBS_TOKEN: "env-token" };
    const parsed = parseSubmitArgs(["x"], (name) => env[name as keyof typeof env]);
    assert.ok(!parsed.help);
    assert.equal(parsed.options.url, "http://127.0.0.1:7");
    assert.equal(parsed.options.token, "env-token");
  });
  await t.step("flags win over the environment; empty values count as unset", () => {
    const env = { IMAGE_JOBS_URL: "http://127.0.0.1:7", IMAGE_JOBS_TOKEN: "" };
    const parsed = parseSubmitArgs(
      ["x", "--url", "http://127.0.0.1:8"],
      (n) => env[n as keyof typeof env],
    );
    assert.ok(!parsed.help);
    assert.equal(parsed.options.url, "http://127.0.0.1:8");
    assert.equal(parsed.options.token, undefined);
  });
  await t.step("the default URL, and words joined into one prompt", () => {
    const parsed = parseSubmitArgs(["a", "red", "fox"], noEnv);
    assert.ok(!parsed.help);
    assert.equal(parsed.options.url, DEFAULT_URL);
    assert.equal(parsed.options.prompt, "a red fox");
  });
  await t.step("--help and -h", () => {
    assert.deepEqual(parseSubmitArgs(["--help"], noEnv), { help: true });
    assert.deepEqual(parseSubmitArgs(["-h", "x"], noEnv), { help: true });
  });
});

Deno.test("parseSubmitArgs refuses bad command lines with exit code 2", async (t) => {
  await t.step("no prompt", () => usageError([], /the prompt is missing/));
  await t.step("a blank prompt", () => usageError(["  "], /the prompt is missing/));
  await t.step("an unknown option", () => usageError(["x", "--bogus"], /Unknown option '--bogus'/));
  await t.step("a flag without its value", () => usageError(["x", "--out"], /--out/));
  await t.step("a URL that is not http", () => usageError(["x", "--url", "ftp://h"], /not http/));
  await t.step("a URL that is not a URL", () => usageError(["x", "--url", "nope"], /not a URL/));
});

Deno.test("USAGE documents every option and exit code", () => {
  for (const text of ["--out", "--url", "--token", "--aspect-ratio", "--help"]) {
    assert.ok(USAGE.includes(text), text);
  }
  for (const code of Object.values(EXIT)) assert.match(USAGE, new RegExp(`^  ${code} `, "m"));
});
