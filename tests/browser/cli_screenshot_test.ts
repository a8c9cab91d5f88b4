/**
 * The CLI on a real terminal (a pty from util-linux `script`): its status line redraws in place and
 * ends with the saved file; the final screen is rendered in chromium as tests/artifacts/cli.png.
 */
import assert from "node:assert/strict";
import { launchBrowser } from "../support/browser.ts";
import { startFakeXai } from "../support/fake_xai.ts";
import { startService } from "../support/service.ts";
import { ARTIFACTS } from "../support/browser.ts";
import { TASK_PERMISSIONS } from "../lib/cli/cli_helpers.ts";
import { OPTIONS } from "./page_helpers.ts";

const SCRIPT = new URL("../../lib/cli/submit.ts", import.meta.url).pathname;

/** Single-quotes a word for `sh -c`. */
function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** What a terminal shows at the end: each line as its last carriage return left it, no escapes. */
export function screenOf(output: string): string[] {
  // deno-lint-ignore no-control-regex -- ESC starts the terminal's control sequences
  const plain = output.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
  return plain.split(/\r?\n/).map((line) => line.split("\r").at(-1) ?? "").filter((l) => l !== "");
}

function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

Deno.test({
  name: "deno task submit on a terminal redraws one status line and saves the image",
  ...OPTIONS,
  async fn() {
    const xai = await startFakeXai({ latencyMs: 1_200 });
    const service = await startService({
      DEV_MODE: "1",
      XAI_API_KEY: "xai-test-key",
      GROK_API: xai.url,
      IMAGE_HOSTS: xai.host,
      LOG_LEVEL: "warning",
    });
    const cwd = await Deno.makeTempDir({ prefix: "cli_tty_" });
    try {
      const command = [Deno.execPath(), "run", ...TASK_PERMISSIONS, SCRIPT]
        .concat(["a red fox in snow", "--url", service.url, "--out", "fox.png"])
        .map(quote).join(" ");
      const child = new Deno.Command("script", {
        args: ["-qfec", command, "/dev/null"],
        cwd,
        env: { INIT_CWD: cwd, NO_COLOR: "", TERM: "xterm-256color", COLUMNS: "80" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      });
      const { code, stdout, stderr } = await child.output();
      const output = new TextDecoder().decode(stdout);
      assert.equal(code, 0, `${output}\n${new TextDecoder().decode(stderr)}`);
      // On a terminal the status line is redrawn in place (carriage returns), not printed per event.
      assert.ok(output.includes("\r"), "the status line redraws in place");
      const screen = screenOf(output);
      assert.ok(screen.some((line) => /succeeded/.test(line)), screen.join("\n"));
      assert.ok(screen.some((line) => line.includes("fox.png")), screen.join("\n"));
      assert.ok((await Deno.stat(`${cwd}/fox.png`)).size > 0);

      const browser = await launchBrowser();
      try {
        const page = await browser.newPage({ viewport: { width: 760, height: 220 } });
        const lines = [`$ deno task submit "a red fox in snow" --out fox.png`, ...screen];
        await page.setContent(
          `<body style="margin:0;background:#1e1e2e"><pre style="margin:0;padding:16px 20px;` +
            `color:#cdd6f4;font:15px/1.5 monospace">${
              lines.map(escapeHtml).join("\n")
            }</pre></body>`,
        );
        await Deno.mkdir(ARTIFACTS, { recursive: true });
        await page.screenshot({ path: new URL("cli.png", ARTIFACTS).pathname, fullPage: true });
      } finally {
        await browser.close();
      }
    } finally {
      await service.stop();
      await xai.close();
      await Deno.remove(cwd, { recursive: true });
    }
  },
});
