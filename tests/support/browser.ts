/** Chromium for the browser tests: playwright-core driving /usr/bin/chromium, loopback only, watched. */
import {
  type Browser,
  type BrowserContext,
  chromium,
  type ConsoleMessage,
  type Page,
} from "playwright-core";

/** The browser the tests drive (Debian package `chromium`). */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Flags: headless, no sandbox (root in CI), and nothing that talks to Google on its own. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Where screenshots go (git-ignored). */
export const ARTIFACTS = new URL("../artifacts/", import.meta.url);

/** Starts chromium; throws a message that says what to install when it cannot. */
export async function launchBrowser(): Promise<Browser> {
  try {
    await Deno.stat(CHROMIUM_PATH);
  } catch {
    throw new Error(
      `Cannot start the browser tests: ${CHROMIUM_PATH} is missing (run: sudo apt-get install -y chromium)`,
    );
  }
  try {
    return await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  } catch (error) {
    throw new Error(`Cannot start chromium at ${CHROMIUM_PATH}: ${String(error)}`, {
      cause: error,
    });
  }
}

/** A page whose problems are recorded: console errors, uncaught errors, CSP violations. */
export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  /** Console errors, page errors and CSP violations so far, except those `expect` allowed. */
  problems(): string[];
  /** Requests to anything but 127.0.0.1, which were aborted. */
  readonly blocked: string[];
  /** Allows console errors matching `pattern` from now on (an expected 4xx answer, say). */
  expect(pattern: RegExp): void;
  /** Saves a full-page screenshot as tests/artifacts/<name>.png. */
  screenshot(name: string): Promise<void>;
  close(): Promise<void>;
}

/** Options of openPage. */
export interface PageOptions {
  viewport?: { width: number; height: number };
}

/** Opens a page in a fresh context (its own session storage) with every problem recorded. */
export async function openPage(
  browser: Browser,
  { viewport = { width: 1280, height: 800 } }: PageOptions = {},
): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport });
  const problems: string[] = [];
  const allowed: RegExp[] = [];
  const blocked: string[] = [];
  await context.exposeBinding("__reportCspViolation", (_source, text: string) => {
    problems.push(`CSP violation: ${text}`);
  });
  // Runs before the page's own scripts, in every page of the context (CDP, so outside the page's CSP).
  await context.addInitScript(`document.addEventListener("securitypolicyviolation", (event) =>
    __reportCspViolation(event.violatedDirective + " " + event.blockedURI + " at " + event.sourceFile))`);
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === "127.0.0.1") return route.continue();
    blocked.push(url.href);
    return route.abort();
  });
  const page = await context.newPage();
  page.on("console", (message: ConsoleMessage) => {
    if (message.type() !== "error") return;
    const text = message.text();
    if (!allowed.some((pattern) => pattern.test(text))) problems.push(`console: ${text}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  return {
    page,
    context,
    blocked,
    problems: () => [...problems],
    expect: (pattern) => void allowed.push(pattern),
    async screenshot(name) {
      await Deno.mkdir(ARTIFACTS, { recursive: true });
      const path = new URL(`${name}.png`, ARTIFACTS).pathname;
      await page.screenshot({ path, fullPage: true });
    },
    close: () => context.close(),
  };
}
