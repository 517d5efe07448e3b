// The browser tests' harness: Debian's chromium driven by playwright-core, against the real
// `capsul serve` (hub + in-process simulated spoke, CAPSUL_MODE=both) on a free port, with a database
// and a data directory (the development outbox) of the test file's own.
// Without chromium the tests skip with one line, unless CAPSUL_REQUIRE_BROWSER=1 (CI), where that fails.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { freePort } from '../../src/db/embedded.ts';
import { latestOutboxMessage } from '../../src/mail/mailer.ts';
import { testDatabase, type TestDatabase } from '../support/db.ts';
import { projectRoot, runCapsul, startServe, type Run } from '../support/processes.ts';

export const chromiumPath = process.env.CHROMIUM_PATH?.trim() || '/usr/bin/chromium';
const browserRequired = process.env.CAPSUL_REQUIRE_BROWSER === '1';
export const screenshotDir = path.join(projectRoot, 'docs', 'screenshots');

/** Every wait is bounded by this; none asserts how long anything took. */
export const waitLimitMs = 60_000;
/** Playwright's own limit for one action (a click, a navigation) on a slow, busy machine. */
const actionTimeoutMs = 30_000;

/** The one-line reason to skip the browser tests here, or undefined when they must run. */
export function browserSkipReason(): string | undefined {
  if (existsSync(chromiumPath) || browserRequired) return undefined;
  return `no chromium at ${chromiumPath}: browser tests skipped (apt-get install chromium; CI sets CAPSUL_REQUIRE_BROWSER=1 and fails instead)`;
}

export type Browser = {
  /** a page in a fresh context of its own (cookies, storage): one per person in the test */
  newPage(options?: { width: number; height: number; phone?: boolean }): Promise<Page>;
  close(): Promise<void>;
};

/**
 * Headless chromium, quiet on a closed network. playwright's launch gives it a fresh profile
 * (--user-data-dir in a new temp dir, removed on close); each person gets a context of their own.
 */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `CAPSUL_REQUIRE_BROWSER=1 but there is no chromium at ${chromiumPath}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`,
    );
  }
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: actionTimeoutMs * 2,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      '--disable-dev-shm-usage',
    ],
  });
  return {
    async newPage({ width, height, phone = false } = { width: 1100, height: 800 }) {
      const context = await browser.newContext({
        viewport: { width, height },
        // A phone honours <meta name="viewport">, as a desktop browser does not.
        ...(phone ? { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } : {}),
      });
      context.setDefaultTimeout(actionTimeoutMs);
      context.setDefaultNavigationTimeout(actionTimeoutMs);
      return context.newPage();
    },
    async close() {
      await browser.close().catch(() => {});
    },
  };
}

export type Server = {
  baseUrl: string;
  dataDir: string;
  databaseUrl: string;
  /** the server's stdout and stderr so far */
  output(): string;
  /** `capsul <args>` as an operator runs it, against the server's database */
  capsul(args: string[]): Promise<Run>;
  stop(): Promise<void>;
};

const started: ChildProcess[] = [];
// Belt and braces for a runner that exits without after hooks (a timeout, an interrupt).
process.once('exit', () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** `capsul serve` in development mode (hub + simulated spoke on host `local`) on a free port. */
export async function startServer(options: { adminEmails: string[]; env?: Record<string, string> }): Promise<Server> {
  const db: TestDatabase = await testDatabase({ host: false });
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-browser-'));
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = {
    // The children are programs, not test files.
    NODE_TEST_CONTEXT: undefined,
    NODE_OPTIONS: undefined,
    ...db.env,
    CAPSUL_DATA_DIR: dataDir,
    CAPSUL_MODE: 'both',
    HOST: '127.0.0.1',
    PORT: String(port),
    BASE_URL: baseUrl,
    SUPPORT_EMAIL: 'support@capsul.example',
    ADMIN_EMAILS: options.adminEmails.join(','),
    SECRET_KEY: 'b'.repeat(64),
    LOG_LEVEL: 'warn',
    ...options.env,
  };
  let serve: Awaited<ReturnType<typeof startServe>>;
  try {
    serve = await startServe(env);
  } catch (error) {
    await db.close();
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  started.push(serve.child);
  return {
    baseUrl,
    dataDir,
    databaseUrl: db.url,
    output: serve.output,
    capsul: (args) => runCapsul(args, { NODE_TEST_CONTEXT: undefined, NODE_OPTIONS: undefined, ...db.env, CAPSUL_DATA_DIR: dataDir }),
    async stop() {
      if (serve.child.exitCode === null && serve.child.signalCode === null) {
        serve.child.kill('SIGTERM');
        if (!(await settlesWithin(serve.exited, 15_000))) {
          serve.child.kill('SIGKILL');
          await settlesWithin(serve.exited, 5_000);
        }
      }
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Logs `page` in as `email` the way a person does: the form, the link in the email, the button.
 * `from` is where the person starts (a page that needs a login sends them to the form, and back after).
 */
export async function logIn(
  page: Page,
  server: Server,
  email: string,
  options: { from?: string; shots?: { form?: string; link?: string } } = {},
): Promise<void> {
  await page.goto(`${server.baseUrl}${options.from ?? '/auth/login'}`);
  await page.getByRole('heading', { name: 'Log in', level: 1 }).waitFor();
  await page.getByLabel('Email address').fill(email);
  if (options.shots?.form) await screenshot(page, options.shots.form);
  await page.getByRole('button', { name: 'Send me a login link' }).click();
  await followLoginLink(page, server, email, options.shots?.link);
}

const magicLink = /https?:\/\/\S+\/auth\/magic\/[A-Za-z0-9_-]+/;

/** From "Check your email": opens the link in the newest email to `email` and presses the button. */
export async function followLoginLink(page: Page, server: Server, email: string, shot?: string): Promise<void> {
  await page.getByRole('heading', { name: 'Check your email' }).waitFor();
  await visible(page.getByText(email));
  const link = await waitFor(`a login link to ${email} in the outbox`, async () => {
    // The newest email with a link: the server's jobs may mail the same person meanwhile (a statement).
    const message = await latestOutboxMessage(path.join(server.dataDir, 'outbox'), email, magicLink);
    return message ? magicLink.exec(message)?.[0] : undefined;
  });
  assert.ok(link.startsWith(`${server.baseUrl}/`), `the link ${link} points at the site (BASE_URL)`);
  await page.goto(link);
  await page.getByRole('heading', { name: `Log in as ${email}` }).waitFor();
  if (shot) await screenshot(page, shot);
  await page.getByRole('button', { name: 'Log in', exact: true }).click();
  await page.waitForURL((url) => !url.pathname.startsWith('/auth/'));
  await visible(page.getByText(`Logged in as ${email}`));
}

/** The value next to `term` in a page's list of facts (<dl class="facts">). */
export async function fact(page: Page, term: string): Promise<string> {
  const dd = page.locator('dl.facts dt', { hasText: new RegExp(`^${term}$`) }).locator('xpath=following-sibling::dd[1]');
  return (await dd.innerText()).trim();
}

/** "$20.00", "-$0.51" → cents. */
export function cents(text: string): number {
  const match = /^(-?)\$(\d+)\.(\d\d)$/.exec(text.trim());
  assert.ok(match, `${JSON.stringify(text)} is an amount of dollars`);
  return (match[1] ? -1 : 1) * (Number(match[2]) * 100 + Number(match[3]));
}

// Screenshots wait in a temp dir until the journey has finished: docs/screenshots/ gets a whole set
// from one run, never a mix of two runs after a failure.
let stagedDir: string | undefined;
function staged(): string {
  if (!stagedDir) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'capsul-screenshots-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    stagedDir = dir;
  }
  return stagedDir;
}

/** A full-page PNG of what `page` shows, named for the page; see publishScreenshots. */
export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(staged(), `${name}.png`), fullPage: true, animations: 'disabled', caret: 'hide' });
}

/**
 * With CAPSUL_SCREENSHOTS=1, copies this run's screenshots to docs/screenshots/ (call once every step
 * has passed). Otherwise the committed set stays as it is, so an ordinary test run leaves git clean.
 */
export function publishScreenshots(): string[] {
  if (process.env.CAPSUL_SCREENSHOTS !== '1') return [];
  mkdirSync(screenshotDir, { recursive: true });
  const names = readdirSync(staged())
    .filter((name) => name.endsWith('.png'))
    .sort();
  for (const name of names) copyFileSync(path.join(staged(), name), path.join(screenshotDir, name));
  return names;
}

/** Waits for the locator to be visible; the error names what was awaited. */
export async function visible(locator: ReturnType<Page['locator']>, timeoutMs = actionTimeoutMs): Promise<void> {
  try {
    await locator.first().waitFor({ state: 'visible', timeout: timeoutMs });
  } catch (error) {
    throw new Error(`not visible within ${timeoutMs / 1000} s: ${locator}\n${(error as Error).message.split('\n')[0]}`);
  }
}

/**
 * Reloads `page` until `done` holds (the capsul page refreshes itself too; reloading keeps the wait
 * independent of its interval). Fails after `timeoutMs` with what the page last said.
 */
export async function reloadUntil(page: Page, what: string, done: () => Promise<boolean>, timeoutMs = waitLimitMs): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await done().catch(() => false)) return;
    if (Date.now() > deadline) {
      const text = await page
        .locator('main')
        .innerText()
        .catch(() => '(unreadable)');
      throw new Error(`gave up after ${timeoutMs / 1000} s waiting for ${what}; ${page.url()} shows:\n${text}`);
    }
    await delay(500);
    // The page's own meta refresh may be navigating at the same moment: an aborted reload is retried.
    await page.reload({ waitUntil: 'load' }).catch(() => {});
  }
}

/** Polls `probe` until it returns something other than false or undefined; fails after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | false | undefined>, timeoutMs = waitLimitMs): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== false && value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs / 1000} s waiting for ${what}`);
    await delay(200);
  }
}

/**
 * The page never scrolls sideways: its content fits the window. On a phone, content that is too wide
 * makes the browser zoom out (innerWidth grows past the screen's width), so that is checked too.
 */
export async function assertNoHorizontalScroll(page: Page): Promise<void> {
  const screenWidth = page.viewportSize()!.width;
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.scrollingElement!.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  const where = new URL(page.url()).pathname;
  assert.ok(innerWidth <= screenWidth, `${where} is zoomed out to fit a ${innerWidth} px wide layout on a ${screenWidth} px screen`);
  assert.ok(scrollWidth <= innerWidth, `${where} scrolls sideways at ${innerWidth} px: it is ${scrollWidth} px wide`);
}

/** A real ed25519 public key in OpenSSH's one-line format, and its SHA256 fingerprint as ssh-keygen -l prints it. */
export function ed25519PublicKey(comment: string): { line: string; fingerprint: string } {
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const field = (bytes: Buffer) => Buffer.concat([u32(bytes.length), bytes]);
  const blob = Buffer.concat([field(Buffer.from('ssh-ed25519')), field(raw)]);
  // ssh-keygen prints the digest in base64 without padding.
  const fingerprint = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
  return { line: `ssh-ed25519 ${blob.toString('base64')} ${comment}`, fingerprint };
}

function u32(n: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(n);
  return buffer;
}

/** Whether `promise` settles within `ms`; the timer never outlives the answer (it would hold the process open). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
