/**
 * The CLI against a hostile or broken service: a job id that is no job id never names a file, and the
 * service's text reaches the terminal without its control characters.
 */
import assert from "node:assert/strict";
import { printable } from "../../../lib/cli/errors.ts";
import { runCli } from "./cli_helpers.ts";

/** A fake service that answers a submit with `id` and then fails the job with `error`. */
function hostile(id: string, error: string) {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const url = new URL(request.url);
    if (request.method === "POST" && url.pathname === "/v1/images") {
      const urls = { self: `/v1/jobs/${id}`, events: `/v1/jobs/${id}/events` };
      return Response.json({ id, status: "queued", created_at: new Date().toISOString(), urls }, {
        status: 202,
      });
    }
    if (url.pathname.endsWith("/events")) {
      const data = JSON.stringify({ id, type: "failed", success: false, error, at: "" });
      return new Response(`id: 1\nevent: failed\ndata: ${data}\n\n`, {
        headers: { "content-type": "text/event-stream" },
      });
    }
    return Response.json({ id, status: "failed", error }, { status: 200 });
  });
}

Deno.test("printable drops escape sequences, newlines and bidi controls, and keeps the rest", () => {
  assert.equal(printable("a\u001b]0;pwned\u0007b\u001b[2Jc\r\nd\u202ee"), "a]0;pwnedb[2Jcde");
  assert.equal(printable("Cannot — déjà vu 🦊"), "Cannot — déjà vu 🦊");
});

Deno.test({
  name: "a job id with a path in it is refused before it names a file (exit 5)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = hostile("../../escaped", "no");
    const cwd = await Deno.makeTempDir();
    try {
      const url = `http://127.0.0.1:${server.addr.port}`;
      const { code, stderr } = await runCli(["a fox", "--url", url, "--token", "t"], { cwd });
      assert.equal(code, 5, stderr);
      assert.match(stderr, /invalid job id/);
      assert.deepEqual([...Deno.readDirSync(cwd)], []);
    } finally {
      await server.shutdown();
      await Deno.remove(cwd, { recursive: true });
    }
  },
});

Deno.test({
  name: "the service's error text is printed without its control characters",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = hostile("fine-1", "bad\u001b]0;owned\u0007\u001b[2J\nFAKE: job succeeded");
    const cwd = await Deno.makeTempDir();
    try {
      const url = `http://127.0.0.1:${server.addr.port}`;
      const { code, stdout, stderr } = await runCli(["a fox", "--url", url, "--token", "t"], {
        cwd,
      });
      assert.equal(code, 1, stderr);
      const all = stdout + stderr;
      assert.ok(!all.includes("\u001b]"), "no OSC sequence");
      assert.ok(!all.includes("\u001b[2J"), "no screen clear");
      assert.ok(!/\nFAKE: job succeeded/.test(all), "no faked line");
    } finally {
      await server.shutdown();
      await Deno.remove(cwd, { recursive: true });
    }
  },
});
