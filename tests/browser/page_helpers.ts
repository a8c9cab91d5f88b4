/** Helpers of the browser tests: a DEV_MODE service on the fake xAI with chromium, and page steps. */
import assert from "node:assert/strict";
import type { Browser, Page } from "playwright-core";
import { type FakeXai, startFakeXai } from "../support/fake_xai.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { launchBrowser, openPage, type WatchedPage } from "../support/browser.ts";

/** playwright keeps its pipes and timers between steps: the tests close everything themselves. */
export const OPTIONS = { sanitizeOps: false, sanitizeResources: false };
/** A phone-sized viewport (390 px wide). */
export const PHONE = { width: 390, height: 844 };

/** The page's globals, typed as far as these tests use them (the project's checks have no DOM types). */
export interface PageGlobals {
  document: { documentElement: { scrollWidth: number } };
  navigator: { clipboard: { readText(): Promise<string> } };
}

/** What withSetup gives a test. */
export interface Setup {
  service: ServiceProcess;
  xai: FakeXai;
  browser: Browser;
}

/** A DEV_MODE service on the fake xAI, and chromium; everything stopped afterwards. */
export async function withSetup(env: Record<string, string>, fn: (setup: Setup) => Promise<void>) {
  const xai = await startFakeXai();
  let service: ServiceProcess | undefined;
  let browser: Browser | undefined;
  try {
    service = await startService({
      DEV_MODE: "1",
      XAI_API_KEY: "xai-test-key",
      GROK_API: xai.url,
      IMAGE_HOSTS: xai.host,
      LOG_LEVEL: "warning",
      ...env,
    });
    browser = await launchBrowser();
    await fn({ service, xai, browser });
  } catch (error) {
    // What the service logged says why a page waited in vain.
    const log = service?.output().slice(-3_000) ?? "";
    throw new Error(`${String(error)}\n--- service output (end) ---\n${log}`, { cause: error });
  } finally {
    await browser?.close();
    await service?.stop();
    await xai.close();
  }
}

/** Opens the page and signs in with the dev-token button; resolves once the live stream is open. */
export async function signInWithDevToken(browser: Browser, url: string, viewport?: typeof PHONE) {
  const watched = await openPage(browser, { viewport });
  await watched.page.goto(`${url}/`);
  await watched.page.click("#dev-token");
  try {
    await watched.page.waitForSelector("#live[data-state=live]");
  } catch (error) {
    const live = await watched.page.textContent("#live");
    const signIn = await watched.page.textContent("#token-error");
    const state = `live: "${live}", sign-in error: "${signIn}", problems: ${watched.problems()}`;
    throw new Error(`Cannot see the live stream open (${state})`, { cause: error });
  }
  return watched;
}

/** Submits a prompt; returns the new card's job id. */
export async function generate(page: Page, prompt: string, aspect = ""): Promise<string> {
  const first = page.locator("#cards > .card").first();
  const before = await first.count() ? await first.getAttribute("data-id") : null;
  await page.fill("#prompt", prompt);
  await page.selectOption("#aspect", aspect);
  await page.click("#generate");
  await page.waitForSelector(`#cards > .card:first-child:not([data-id="${before}"])`);
  return (await first.getAttribute("data-id"))!;
}

/** The selector of a job's card. */
export function card(id: string): string {
  return `#cards > .card[data-id="${id}"]`;
}

/** The card's timeline, as its step types. */
export function steps(page: Page, id: string): Promise<string[]> {
  return page.locator(`${card(id)} .step`).evaluateAll((items) =>
    items.map((item) => item.className.replace("step ", ""))
  );
}

/** Waits until the job's card shows `status`. */
export function waitForStatus(page: Page, id: string, status: string) {
  return page.waitForSelector(`${card(id)}[data-status="${status}"]`);
}

/** The card's image once loaded: its src and natural width. */
export async function loadedImage(page: Page, id: string) {
  const img = page.locator(`${card(id)} .result img`);
  await img.waitFor();
  const width = () =>
    img.evaluate((el) => (el as unknown as { naturalWidth: number }).naturalWidth);
  await img.evaluate((el) => {
    const image = el as unknown as { complete: boolean; decode(): Promise<void> };
    return image.complete ? undefined : image.decode();
  });
  return { src: (await img.getAttribute("src"))!, width: await width() };
}

/** Asserts no console error, page error, CSP violation or request beyond 127.0.0.1 so far. */
export function assertClean(watched: WatchedPage) {
  assert.deepEqual(watched.problems(), []);
  assert.deepEqual(watched.blocked, []);
}

/** The page's token (tests only: read from session storage). */
export async function token(page: Page): Promise<string> {
  return (await page.evaluate(() => sessionStorage.getItem("imagejobs.token")))!;
}
