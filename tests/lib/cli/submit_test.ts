/** `deno task submit` against the real service (a subprocess, DEV_MODE, memory broker) and a fake xAI. */
import assert from "node:assert/strict";
import { closedPort, CONFIG, runCli, spawnCli, spawnDeno } from "./cli_helpers.ts";
import { jobIdOf, SECRET, signToken, startFixture, states } from "./fixture.ts";

Deno.test("deno task submit against a DEV_MODE service", async (t) => {
  const f = await startFixture({ DEV_MODE: "1" });
  const { service, xai, cwd, fakeImage } = f;
  try {
    await t.step(
      "it fetches a dev token, shows each state and saves the fake's image",
      async () => {
        const { code, stdout, stderr } = await runCli(["a red fox", "--url", service.url], { cwd });
        assert.equal(code, 0, stderr);
        assert.match(stdout, /Using a dev token from http:\/\/127\.0\.0\.1:\d+/);
        assert.deepEqual(states(stdout), ["queued", "started", "succeeded"]);
        const id = jobIdOf(stdout);
        assert.match(
          stdout,
          new RegExp(`Saved ${id}\\.png \\(${fakeImage.length} bytes, image/png\\)`),
        );
        assert.deepEqual(await Deno.readFile(`${cwd}/${id}.png`), fakeImage);
        assert.equal(await f.jobStatus(id, await f.devToken()), "succeeded");
      },
    );

    await t.step("its output off a terminal is plain lines without ANSI escapes", async () => {
      const { code, stdout } = await runCli(["plain", "--url", service.url, "-o", "p.png"], {
        cwd,
      });
      assert.equal(code, 0);
      assert.ok(!stdout.includes("\x1b"), JSON.stringify(stdout));
      assert.ok(!stdout.includes("\r"), JSON.stringify(stdout));
      assert.ok(stdout.endsWith("\n"));
    });

    await t.step("--out and --aspect-ratio reach the file and the provider", async () => {
      await Deno.mkdir(`${cwd}/sub`, { recursive: true });
      const { code, stderr } = await runCli([
        "a wide fox",
        "--url",
        service.url,
        "--out",
        "sub/fox.png",
        "--aspect-ratio",
        "16:9",
      ], { cwd });
      assert.equal(code, 0, stderr);
      assert.deepEqual(await Deno.readFile(`${cwd}/sub/fox.png`), fakeImage);
      const body = xai.requests.at(-1)?.body as Record<string, unknown>;
      assert.equal(body.prompt, "a wide fox");
      assert.equal(body.aspect_ratio, "16:9");
    });

    await t.step("IMAGE_JOBS_URL and IMAGE_JOBS_TOKEN stand in for the flags", async () => {
      const env = { IMAGE_JOBS_URL: service.url, IMAGE_JOBS_TOKEN: await f.devToken() };
      const { code, stdout, stderr } = await runCli(["from env", "-o", "env.png"], { cwd, env });
      assert.equal(code, 0, stderr);
      assert.ok(!stdout.includes("Using a dev token"), stdout);
      assert.deepEqual(await Deno.readFile(`${cwd}/env.png`), fakeImage);
    });

    await t.step("a bad token exits 3 with a message", async () => {
      const { code, stderr } = await runCli(["x", "--url", service.url, "--token", "not-a-jwt"], {
        cwd,
      });
      assert.equal(code, 3);
      assert.match(stderr, /Cannot submit the job: the token was refused \(401: .+\)/);
    });

    await t.step("a refused request exits 4 with the service's message", async () => {
      const { code, stderr } = await runCli([
        "x",
        "--url",
        service.url,
        "--aspect-ratio",
        "wide",
      ], { cwd });
      assert.equal(code, 4);
      assert.match(stderr, /Cannot submit the job: the service refused it \(422: .*aspect_ratio/);
    });

    await t.step("an unreachable service exits 5", async () => {
      const url = `http://127.0.0.1:${closedPort()}`;
      const { code, stderr } = await runCli(["x", "--url", url], { cwd });
      assert.equal(code, 5);
      assert.match(stderr, /is unreachable/);
    });

    await t.step("a job that fails exits 1 with the job's error", async () => {
      xai.inject({ status: 400, message: "prompt violates policy" });
      const { code, stdout, stderr } = await runCli(["doomed", "--url", service.url], { cwd });
      assert.equal(code, 1);
      assert.deepEqual(states(stdout), ["queued", "started", "failed"]);
      assert.match(stdout, /failed: Error processing job/);
      assert.match(stderr, /Cannot get the image: job \S+ failed: Error processing job/);
      assert.ok(!stderr.includes("policy"), "the provider's text stays in the service's logs");
      assert.equal(await f.jobStatus(jobIdOf(stdout), await f.devToken()), "failed");
    });

    await t.step("Ctrl-C cancels the running job on the service and exits 130", async () => {
      xai.inject({ hang: true });
      const cli = spawnCli(["a slow fox", "--url", service.url], { cwd });
      const [, id] = await cli.waitForStdout(/Submitted job (\S+) [^]*started/);
      assert.equal(await f.jobStatus(id, await f.devToken()), "running");
      cli.kill("SIGINT");
      const { code, stderr } = await cli.done;
      assert.equal(code, 130, stderr);
      assert.match(stderr, new RegExp(`Interrupted: job ${id} canceled on the service`));
      assert.equal(await f.jobStatus(id, await f.devToken()), "canceled");
    });

    await t.step("the deno task line works from another directory", async () => {
      const cli = spawnDeno(["task", "--config", CONFIG, "submit", "via the task", "-o", "t.png"], {
        cwd,
        env: { IMAGE_JOBS_URL: service.url },
      });
      const { code, stdout, stderr } = await cli.done;
      assert.equal(code, 0, stderr);
      assert.deepEqual(states(stdout), ["queued", "started", "succeeded"]);
      assert.deepEqual(await Deno.readFile(`${cwd}/t.png`), fakeImage);
    });
  } finally {
    await f.close();
  }
});

Deno.test("deno task submit against a service with a configured key", async (t) => {
  const f = await startFixture({ JWT_SECRET: SECRET }, { image: "jpeg" });
  const { service, cwd } = f;
  try {
    await t.step("without a token it exits 3 and asks for one", async () => {
      const { code, stderr } = await runCli(["x", "--url", service.url], { cwd });
      assert.equal(code, 3);
      assert.match(stderr, /not in dev mode .*pass --token JWT or set IMAGE_JOBS_TOKEN/);
    });

    await t.step("with --token it saves a JPEG as <job id>.jpg", async () => {
      const token = await signToken("carol");
      const { code, stdout, stderr } = await runCli(["x", "--url", service.url, "--token", token], {
        cwd,
      });
      assert.equal(code, 0, stderr);
      const id = jobIdOf(stdout);
      const bytes = await Deno.readFile(`${cwd}/${id}.jpg`);
      assert.deepEqual([...bytes.subarray(0, 3)], [0xff, 0xd8, 0xff]);
    });
  } finally {
    await f.close();
  }
});
