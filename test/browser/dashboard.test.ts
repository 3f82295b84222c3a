import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { launchChromium, watchForPageErrors } from '../helpers/chromium.js';
import { createTask, getTask, newChannel, slackPayload, startFakeSlack, waitForStatus, type FakeSlack } from '../helpers/engine.js';
import { eventually } from '../helpers/poll.js';
import { joinTenant } from '../helpers/tenants.js';
import { registerAndLogin, uniqueSuffix, type RegisteredUser } from '../helpers/users.js';

// The dashboard in a real headless Chromium, against the real app with a worker in the same
// process and a fake Slack: what a person does, clicked and typed, with the page's own script
// doing the live updates. One browser; one context (a person) per user, its page reused.

const LIVE_TIMEOUT_MS = 20_000;

let app: TestApp;
let slack: FakeSlack;
let browser: Browser;
const contexts: BrowserContext[] = [];
/** What each page reported as broken (script errors, blocked resources), checked at the end. */
const pageErrors: string[][] = [];

/** The owner, registered through the form; `api` is the same user with a bearer token, for set-up. */
let owner: { email: string; password: string; page: Page; api: RegisteredUser };

async function newPage(): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(LIVE_TIMEOUT_MS);
  pageErrors.push(watchForPageErrors(page));
  return page;
}

async function signIn(page: Page, user: { email: string; password: string }): Promise<void> {
  await page.goto(`${app.url}/app/login`);
  await page.getByLabel('Email', { exact: true }).fill(user.email);
  await page.getByLabel('Password', { exact: true }).fill(user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/app/tasks');
}

/** The status badge in a task page's heading. */
const headerStatus = (page: Page, status: string) => page.locator(`#task-detail .page-head [data-status="${status}"]`);

before(async () => {
  slack = await startFakeSlack();
  app = await startTestApp({ worker: true, env: { SLACK_WEBHOOK_URL: `${slack.url}/hook` } });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await app?.close();
  await slack?.close();
  assert.deepEqual(pageErrors.flat(), [], 'no page reported a script error or a blocked resource');
});

describe('the dashboard in Chromium', () => {
  test('register a tenant, sign out, sign in again', async () => {
    const page = await newPage();
    const suffix = uniqueSuffix();
    const user = { email: `browser-${suffix}@example.com`, password: 'correct horse battery' };
    await page.goto(`${app.url}/app/register`);
    await page.getByLabel('Organisation (tenant) name').fill(`Browser ${suffix}`);
    await page.getByLabel('Email', { exact: true }).fill(user.email);
    await page.getByLabel('Password', { exact: true }).fill(user.password);
    await page.getByRole('button', { name: 'Register and sign in' }).click();
    await page.waitForURL('**/app/tasks');
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Tasks');
    assert.match((await page.locator('.account').textContent()) ?? '', new RegExp(`Browser ${suffix}.*owner`));

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL('**/app/login?notice=signed_out');
    await signIn(page, user);
    const login = await app.post('/api/v1/auth/login', user);
    const me = await app.get('/api/v1/auth/me', { token: login.body.access_token });
    owner = { ...user, page, api: { ...user, tenantName: me.body.tenant.name, userId: me.body.id, tenantId: me.body.tenant_id, token: login.body.access_token } };
  });

  test('the keyboard reaches the content first through the skip link', async () => {
    const { page } = owner;
    await page.goto(`${app.url}/app/tasks`);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement.textContent'), 'Skip to content');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate('document.activeElement.id'), 'main');
  });

  test('a 3-step chain made in the form reaches success, step by step, without a reload', async () => {
    const { page } = owner;
    const channel = newChannel('chain');
    await page.goto(`${app.url}/app/tasks/new`);
    const fillStep = async (step: number, message: string) => {
      await page.locator(`#s${step}-action`).selectOption('post_to_slack');
      await page.getByLabel('Channel').nth(step).fill(channel);
      await page.getByLabel('Message').nth(step).fill(message);
    };
    await fillStep(0, 'first');
    await page.getByRole('button', { name: 'Add a chained step' }).click();
    await fillStep(1, 'second');
    await page.getByRole('button', { name: 'Add a chained step' }).click();
    await fillStep(2, 'third');
    // Only the chosen action's fields show.
    assert.equal(await page.locator('#s2-a-delay-seconds').isVisible(), false);
    await page.getByRole('button', { name: 'Create task', exact: true }).click();
    await page.waitForURL(/\/app\/tasks\/[0-9a-f-]{36}\?notice=created$/);

    let navigations = 0;
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations += 1;
    });
    await page.locator('#task-detail .chain li [data-status="success"]').nth(2).waitFor({ timeout: LIVE_TIMEOUT_MS });
    assert.equal(navigations, 0, 'the page was never reloaded');
    assert.deepEqual(await page.locator('#task-detail .chain li .badge').allTextContents(), ['Succeeded', 'Succeeded', 'Succeeded']);
    assert.equal(await headerStatus(page, 'success').count(), 1);
    assert.deepEqual(
      slack.requestsFor(channel).map((request) => request.body.text),
      ['first', 'second', 'third'],
    );
    assert.match((await page.locator('.live-status').textContent()) ?? '', /^Live: /);
  });

  test('a running task is canceled with its button', async () => {
    const { page, api } = owner;
    const channel = newChannel('hold');
    slack.route(channel, () => ({ hang: true }));
    const task = await createTask(app, api.token, { payload: slackPayload(channel) });
    await page.goto(`${app.url}/app/tasks/${task.id}`);
    await headerStatus(page, 'in_progress').waitFor();
    await page.getByRole('button', { name: 'Cancel task' }).click();
    await page.waitForURL(`**/app/tasks/${task.id}?notice=canceled`);
    assert.equal(await headerStatus(page, 'canceled').count(), 1);
    assert.equal((await getTask(app, api.token, task.id)).status, 'canceled');
    assert.equal(await page.getByRole('button', { name: 'Cancel task' }).count(), 0);
  });

  test('a failed task is retried with its button, and the retry succeeds live', async () => {
    const { page, api } = owner;
    const channel = newChannel('flaky');
    slack.route(channel, (_request, index) => (index === 0 ? { status: 500, body: 'down' } : { status: 200, body: 'ok' }));
    const task = await createTask(app, api.token, { payload: slackPayload(channel) });
    await page.goto(`${app.url}/app/tasks/${task.id}`);
    await headerStatus(page, 'failed').waitFor();
    await page.getByRole('button', { name: 'Retry' }).click();
    await page.waitForURL(/\?notice=retried$/);
    assert.equal(await page.locator('#task-detail').getByRole('link', { name: task.id.slice(0, 8) }).count(), 1, 'a link to the original');
    await headerStatus(page, 'success').waitFor();
  });

  test("another tenant's task id shows the not-found page", async () => {
    const task = await createTask(app, owner.api.token, { payload: slackPayload(newChannel('private')), delay_seconds: 3600 });
    const stranger = await registerAndLogin(app, 'stranger');
    const page = await newPage();
    await signIn(page, stranger);
    const response = await page.goto(`${app.url}/app/tasks/${task.id}`);
    assert.equal(response?.status(), 404);
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Task not found');
    assert.equal(await page.getByText('private').count(), 0);
  });

  test('a viewer sees the running task but no button to cancel it', async () => {
    const channel = newChannel('watched');
    slack.route(channel, () => ({ hang: true }));
    const task = await createTask(app, owner.api.token, { payload: slackPayload(channel) });
    await waitForStatus(app, owner.api.token, task.id, 'in_progress');
    const viewer = await joinTenant(app, owner.api, 'viewer');
    const page = await newPage();
    await signIn(page, viewer);
    await page.goto(`${app.url}/app/tasks/${task.id}`);
    await headerStatus(page, 'in_progress').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Cancel task' }).count(), 0);
    assert.equal(await page.getByRole('link', { name: 'New task' }).count(), 0);
    assert.equal((await app.delete(`/api/v1/tasks/${task.id}`, { token: owner.api.token })).status, 200);
    // The viewer's page follows the cancellation live.
    await headerStatus(page, 'canceled').waitFor();
  });

  test('a live refresh answered 503 is tried again, and the page goes on following its task', async () => {
    const channel = newChannel('busy-server');
    slack.route(channel, () => ({ hang: true }));
    const task = await createTask(app, owner.api.token, { payload: slackPayload(channel) });
    const page = await newPage();
    const errors = pageErrors.at(-1)!;
    await signIn(page, owner);
    await page.goto(`${app.url}/app/tasks/${task.id}`);
    await headerStatus(page, 'in_progress').waitFor();
    // The server too busy for the page's next two reads (a connection pool exhausted for a moment).
    let refused = 0;
    let readAfterRefusals = false;
    await page.route(`${app.url}/app/tasks/${task.id}`, (route) => {
      if (route.request().resourceType() !== 'fetch') return route.continue();
      if (refused >= 2) {
        readAfterRefusals = true;
        return route.continue();
      }
      refused += 1;
      return route.fulfill({ status: 503, contentType: 'application/json', body: '{"detail":"Database unavailable"}' });
    });
    assert.equal((await app.delete(`/api/v1/tasks/${task.id}`, { token: owner.api.token })).status, 200);
    await headerStatus(page, 'canceled').waitFor();
    // A read the page sent before the refusals began (its stream's opening asks for one) may
    // already show the cancellation; the one the cancellation's event asks for comes after it
    // all the same, and meets the refusals.
    await eventually(() => (readAfterRefusals ? true : undefined), { timeoutMs: 15_000, message: 'both refused reads were tried again' });
    assert.equal(refused, 2);
    await page.locator('.live-status', { hasText: /^Live: / }).waitFor({ timeout: 15_000 });
    await headerStatus(page, 'canceled').waitFor();
    // The browser reports each refused read on the console: expected here, and only here.
    errors.splice(0, errors.length, ...errors.filter((error) => !/status of 503/.test(error)));
  });

  test('a form posted without its CSRF token is refused', async () => {
    const { page, api } = owner;
    const task = await createTask(app, api.token, { payload: slackPayload(newChannel('later')), delay_seconds: 3600 });
    await page.goto(`${app.url}/app/tasks/${task.id}`);
    // Taken out and submitted in one step: the page's live refresh may swap the form in again
    // (with its token) between two separate steps.
    const submitWithoutToken = `(() => {
      const form = document.querySelector('form[action$="/cancel"]');
      form.querySelector('input[name="_csrf"]').remove();
      form.requestSubmit();
    })()`;
    const [response] = await Promise.all([page.waitForResponse((answer) => answer.url().endsWith('/cancel')), page.evaluate(submitWithoutToken)]);
    assert.equal(response.status(), 403);
    await page.getByText('This form has expired or did not come from this dashboard').waitFor();
    assert.equal((await getTask(app, api.token, task.id)).status, 'queued');
  });
});
