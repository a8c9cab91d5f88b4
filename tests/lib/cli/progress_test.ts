/** The CLI's progress display on a terminal and off one. */
import assert from "node:assert/strict";
import { formatElapsed, Progress } from "../../../lib/cli/progress.ts";

/** A progress display on a fake clock, recording everything written. */
function recorded(tty: boolean) {
  let now = 1_000;
  const out: string[] = [];
  const progress = new Progress({
    write: (text) => out.push(text),
    tty,
    now: () => now,
    intervalMs: 5,
  });
  return {
    progress,
    out,
    text: () => out.join(""),
    advance: (ms: number) => now += ms,
  };
}

Deno.test("formatElapsed shows seconds with one decimal", () => {
  assert.equal(formatElapsed(0), "0.0s");
  assert.equal(formatElapsed(1_250), "1.3s");
  assert.equal(formatElapsed(61_000), "61.0s");
});

Deno.test("Progress off a terminal writes plain lines only", () => {
  const { progress, text, advance } = recorded(false);
  progress.line("Submitted job j1");
  progress.state("queued", { waiting: true });
  advance(1_500);
  progress.state("failed", { detail: "Error processing job" });
  progress.stop();
  assert.equal(
    text(),
    "Submitted job j1\n   0.0s  queued\n   1.5s  failed: Error processing job\n",
  );
});

Deno.test("Progress on a terminal redraws a status line with the elapsed time", async () => {
  const { progress, out, text, advance } = recorded(true);
  progress.state("started", { waiting: true });
  advance(2_000);
  // The status line is redrawn on its timer: wait for the redraw that shows the new time.
  const redrawn = Promise.withResolvers<void>();
  const push = out.push.bind(out);
  out.push = (...items: string[]) => {
    const n = push(...items);
    if (items.some((s) => s.includes("started 2.0s"))) redrawn.resolve();
    return n;
  };
  await redrawn.promise;
  progress.state("succeeded");
  progress.stop();
  const all = text();
  assert.ok(all.startsWith("   0.0s  started\n⠋ started 0.0s"), JSON.stringify(all));
  assert.match(all.replaceAll("\x1b", "ESC"), /\rESC\[2K. started 2\.0s/);
  assert.ok(all.endsWith("\r\x1b[2K   2.0s  succeeded\n"), JSON.stringify(all));
});
