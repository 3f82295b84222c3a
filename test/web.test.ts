import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startTestApp, withTestApp, type TestApp } from './helpers/app.js';
import { DashboardBrowser, signedInBrowser, visibleText } from './helpers/dashboard.js';
import { startFakeDcl, type FakeDcl } from './helpers/dcl.js';
import { createTask, getTask, slackPayload } from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { invite, joinTenant } from './helpers/tenants.js';
import { registerAndLogin, uniqueSuffix, type RegisteredUser } from './helpers/users.js';

// The dashboard's pages, in-process over real HTTP (no browser): what each page shows, to whom,
// and what its forms refuse. No worker runs: tasks stay as the test puts them.

let app: TestApp;
let dcl: FakeDcl;
let owner: RegisteredUser;
let viewer: RegisteredUser;
let stranger: RegisteredUser;
let ownerBrowser: DashboardBrowser;
let viewerBrowser: DashboardBrowser;

before(async () => {
  dcl = await startFakeDcl();
  // One trusted proxy, so that a request saying X-Forwarded-Proto: https counts as https.
  app = await startTestApp({ env: { LEGACY_DCL_BASE_URL: dcl.url, TRUST_PROXY: '1', ENCRYPTION_KEY: randomBytes(32).toString('hex') } });
  owner = await registerAndLogin(app, 'web');
  viewer = await joinTenant(app, owner, 'viewer');
  stranger = await registerAndLogin(app, 'stranger');
  ownerBrowser = await signedInBrowser(app, owner);
  viewerBrowser = await signedInBrowser(app, viewer);
});

after(async () => {
  await app?.close();
  await dcl?.close();
});

/** The Set-Cookie line of `name` in a response. */
function setCookie(headers: Headers, name: string): string | undefined {
  return headers.getSetCookie().find((line) => line.startsWith(`${name}=`));
}

describe('signing in and out', () => {
  test('signing in sets the session as an HttpOnly, SameSite=Strict cookie for /app only, and opens the tasks', async () => {
    const browser = new DashboardBrowser(app);
    const form = await browser.get('/app/login');
    assert.equal(form.status, 200);
    assert.match(form.html, /<label for="email">Email/);
    assert.match(form.html, /<label for="password">Password/);
    const answer = await browser.post('/app/login', { email: owner.email, password: owner.password });
    assert.equal(answer.status, 303);
    assert.equal(answer.location, '/app/tasks');
    const cookie = setCookie(answer.headers, 'autonomos_session');
    assert.ok(cookie, 'a session cookie is set');
    assert.match(cookie, /; Path=\/app(;|$)/);
    assert.match(cookie, /; HttpOnly/);
    assert.match(cookie, /; SameSite=Strict/);
    assert.match(cookie, /; Max-Age=\d+/);
    assert.doesNotMatch(cookie, /Secure/, 'not Secure over plain http');
    const tasks = await browser.get('/app/tasks');
    assert.equal(tasks.status, 200);
    assert.match(visibleText(tasks.html), new RegExp(`${owner.tenantName} ${owner.email} owner`));
  });

  test('over https (a trusted proxy says so) the cookies are Secure', async () => {
    const browser = new DashboardBrowser(app, { 'X-Forwarded-Proto': 'https' });
    const form = await browser.get('/app/login');
    assert.match(setCookie(form.headers, 'autonomos_csrf') ?? '', /; Secure/);
    await browser.signIn(owner);
    const plain = new DashboardBrowser(app);
    assert.doesNotMatch(setCookie((await plain.get('/app/login')).headers, 'autonomos_csrf') ?? '', /Secure/);
  });

  test('a wrong password is refused on the sign-in page, which keeps the email', async () => {
    const browser = new DashboardBrowser(app);
    await browser.get('/app/login');
    const answer = await browser.post('/app/login', { email: owner.email, password: 'not the password' });
    assert.equal(answer.status, 401);
    assert.match(visibleText(answer.html), /Incorrect email or password/);
    assert.match(answer.html, new RegExp(`value="${owner.email}"`));
    assert.equal(setCookie(answer.headers, 'autonomos_session'), undefined);
  });

  test('after signing in, the page that asked for it opens; never another site', async () => {
    const browser = new DashboardBrowser(app);
    const asked = await browser.get('/app/aoa');
    assert.equal(asked.status, 303);
    assert.equal(asked.location, '/app/login?next=%2Fapp%2Faoa');
    await browser.get(asked.location!);
    const answer = await browser.post('/app/login', { email: owner.email, password: owner.password, next: '/app/aoa' });
    assert.equal(answer.location, '/app/aoa');
    await browser.get('/app/login');
    const offsite = await browser.post('/app/login', { email: owner.email, password: owner.password, next: '//evil.example/app' });
    assert.equal(offsite.location, '/app/tasks');
  });

  test('registering through the form founds a tenant and signs its owner in', async () => {
    const browser = new DashboardBrowser(app);
    await browser.get('/app/register');
    const suffix = uniqueSuffix();
    const answer = await browser.post('/app/register', { name: `Form ${suffix}`, email: `form-${suffix}@example.com`, password: 'correct horse battery' });
    assert.equal(answer.status, 303, answer.html);
    const tasks = await browser.get('/app/tasks');
    assert.match(visibleText(tasks.html), new RegExp(`Form ${suffix} form-${suffix}@example.com owner`));
    assert.match(visibleText(tasks.html), /No tasks yet/);
  });

  test('registration errors are shown next to their fields', async () => {
    const browser = new DashboardBrowser(app);
    await browser.get('/app/register');
    const answer = await browser.post('/app/register', { name: '', email: 'not an email', password: 'short' });
    assert.equal(answer.status, 422);
    assert.match(answer.html, /<p class="field-error" id="email-error">Email must be a valid email address<\/p>/);
    assert.match(answer.html, /<p class="field-error" id="password-error">Password must be at least 8 characters<\/p>/);
    assert.match(answer.html, /id="password"[^>]*aria-invalid="true"[^>]*aria-describedby="password-hint password-error"/);
    const taken = await browser.post('/app/register', { name: `Taken ${uniqueSuffix()}`, email: owner.email, password: 'correct horse battery' });
    assert.equal(taken.status, 400);
    assert.match(taken.html, /id="email-error">Email already registered/);
  });

  test('an invitation is accepted on the join page, with the role it was made for', async () => {
    const email = `joiner-${uniqueSuffix()}@example.com`;
    const { token } = await invite(app, owner, email, 'member');
    const browser = new DashboardBrowser(app);
    const form = await browser.get(`/app/join?token=${encodeURIComponent(token)}`);
    assert.equal(form.status, 200);
    assert.match(form.html, new RegExp(`id="invite_token"[^>]*value="${token}"`));
    const wrongEmail = await browser.post('/app/join', { invite_token: token, email: `someone-else-${uniqueSuffix()}@example.com`, password: 'correct horse battery' });
    assert.equal(wrongEmail.status, 400);
    assert.match(visibleText(wrongEmail.html), /Invitation is not valid for this email/);
    const answer = await browser.post('/app/join', { invite_token: token, email, password: 'correct horse battery' });
    assert.equal(answer.status, 303, answer.html);
    const tasks = await browser.get('/app/tasks');
    assert.match(visibleText(tasks.html), new RegExp(`${owner.tenantName} ${email} member`));
  });

  test('signing out ends the session in this browser', async () => {
    const browser = await signedInBrowser(app, owner);
    await browser.get('/app/tasks');
    const answer = await browser.post('/app/logout');
    assert.equal(answer.status, 303);
    assert.equal(answer.location, '/app/login?notice=signed_out');
    assert.match(setCookie(answer.headers, 'autonomos_session') ?? '', /Max-Age=0/);
    assert.equal((await browser.get('/app/tasks')).status, 303);
  });

  test('revoking the user\'s tokens (sign out everywhere) ends the dashboard session too', async () => {
    const user = await registerAndLogin(app, 'revoked');
    const browser = await signedInBrowser(app, user);
    assert.equal((await browser.get('/app/tasks')).status, 200);
    assert.equal((await app.post('/api/v1/auth/logout', undefined, { token: user.token })).status, 204);
    const answer = await browser.get('/app/tasks');
    assert.equal(answer.status, 303);
    assert.equal(answer.location, '/app/login?notice=expired&next=%2Fapp%2Ftasks');
    const login = await browser.get(answer.location!);
    assert.match(visibleText(login.html), /Your session has ended/);
  });

  test('the session cookie is no credential for the API', async () => {
    const cookie = [...ownerBrowser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    for (const path of ['/api/v1/tasks', '/api/v1/auth/me', '/api/v1/events']) {
      const response = await app.get(path, { headers: { Cookie: cookie } });
      assert.equal(response.status, 401, path);
    }
    const created = await app.post('/api/v1/tasks', { payload: slackPayload('#cookie') }, { headers: { Cookie: cookie } });
    assert.equal(created.status, 401);
  });
});

describe('CSRF', () => {
  test('a form post without the token is refused and changes nothing', async () => {
    const task = await createTask(app, owner.token, { payload: slackPayload('#csrf') });
    await ownerBrowser.get(`/app/tasks/${task.id}`);
    const refused = await ownerBrowser.post(`/app/tasks/${task.id}/cancel`, {}, null);
    assert.equal(refused.status, 403);
    assert.match(visibleText(refused.html), /This form has expired or did not come from this dashboard/);
    assert.equal((await getTask(app, owner.token, task.id)).status, 'queued');
    for (const path of ['/app/login', '/app/register', '/app/tasks/new', '/app/aoa/run', '/app/logout']) {
      assert.equal((await ownerBrowser.post(path, {}, null)).status, 403, path);
    }
  });

  test("another browser's token, or one from before signing in, is refused", async () => {
    const task = await createTask(app, owner.token, { payload: slackPayload('#csrf') });
    const anonymous = new DashboardBrowser(app);
    const foreignToken = /name="_csrf" value="([^"]+)"/.exec((await anonymous.get('/app/login')).html)![1]!;
    await ownerBrowser.get(`/app/tasks/${task.id}`);
    assert.equal((await ownerBrowser.post(`/app/tasks/${task.id}/cancel`, {}, foreignToken)).status, 403);
    // The token is bound to the session: the one the sign-in page carried does not work after it.
    const browser = new DashboardBrowser(app);
    await browser.get('/app/login');
    const beforeSignIn = /name="_csrf" value="([^"]+)"/.exec(browser.last)![1]!;
    await browser.post('/app/login', { email: owner.email, password: owner.password });
    assert.equal((await browser.post(`/app/tasks/${task.id}/cancel`, {}, beforeSignIn)).status, 403);
    assert.equal((await getTask(app, owner.token, task.id)).status, 'queued');
  });
});

describe('hostile input', () => {
  test('a form that is not what it claims to be is a 400 page, text PostgreSQL cannot store a 422 page', async () => {
    const malformed = await fetch(`${app.url}/app/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'multipart/form-data; boundary=x' },
      body: 'garbage',
    });
    assert.equal(malformed.status, 400);
    const browser = new DashboardBrowser(app);
    await browser.get('/app/login');
    const nul = await browser.post('/app/login', { email: 'a\u0000b@example.com', password: 'whatever it is' });
    assert.equal(nul.status, 422);
    assert.match(visibleText(nul.html), /NUL/);
  });

  test('no origin gets CORS headers on the dashboard, which a cookie unlocks', () =>
    withTestApp({ env: { ALLOWED_WEB_ORIGIN: 'https://app.example.com' } }, async (corsApp) => {
      const page = await fetch(`${corsApp.url}/app/login`, { headers: { Origin: 'https://app.example.com' } });
      assert.equal(page.headers.get('access-control-allow-origin'), null);
      assert.equal(page.headers.get('access-control-allow-credentials'), null);
      const api = await fetch(`${corsApp.url}/health/api`, { headers: { Origin: 'https://app.example.com' } });
      assert.equal(api.headers.get('access-control-allow-origin'), 'https://app.example.com');
    }));
});

describe('the task list', () => {
  let lister: RegisteredUser;
  let browser: DashboardBrowser;
  const needle = `needle-${uniqueSuffix()}`;

  before(async () => {
    lister = await registerAndLogin(app, 'lister');
    browser = await signedInBrowser(app, lister);
    await createTask(app, lister.token, { payload: slackPayload('#one') });
    await createTask(app, lister.token, { payload: slackPayload('#two', `a ${needle} here`), max_retries: 5 });
    const canceled = await createTask(app, lister.token, { payload: slackPayload('#three') });
    assert.equal((await app.delete(`/api/v1/tasks/${canceled.id}`, { token: lister.token })).status, 200);
  });

  test('counts by status head the page, and each row shows status, action, created, duration and retries', async () => {
    const page = await browser.get('/app/tasks');
    assert.equal(page.status, 200);
    const text = visibleText(page.html);
    assert.match(text, /3 All tasks 2 Queued 0 Running 0 Succeeded 0 Failed 1 Canceled/);
    assert.match(text, /Task Status Action Created Duration Retries/);
    const rows = page.html.match(/<tr data-task-id="[^"]+">[\s\S]*?<\/tr>/g) ?? [];
    assert.equal(rows.length, 3);
    assert.match(visibleText(rows[0]!), /^[0-9a-f]{8} Canceled post_to_slack #three · hello #three \d{4}-\d\d-\d\d \d\d:\d\d:\d\d — 0\/0$/);
    assert.match(visibleText(rows[1]!), new RegExp(`^[0-9a-f]{8} Queued post_to_slack #two · a ${needle} here \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d waiting 0/5$`));
  });

  test('filters by status, action and text, as GET /api/v1/tasks does', async () => {
    const canceled = await browser.get('/app/tasks?status=canceled');
    assert.equal((canceled.html.match(/<tr data-task-id/g) ?? []).length, 1);
    assert.match(canceled.html, /<input type="checkbox" name="status" value="canceled" checked=""/);
    const searched = await browser.get(`/app/tasks?q=${needle}&action=post_to_slack&status=`);
    assert.equal((searched.html.match(/<tr data-task-id/g) ?? []).length, 1);
    assert.match(searched.html, /<option value="post_to_slack" selected="">/);
    const none = await browser.get('/app/tasks?action=http_request');
    assert.match(visibleText(none.html), /No tasks match on this page/);
    const jobs = await browser.get('/app/tasks?kind=aoa');
    assert.match(jobs.html, /<option value="aoa" selected="">AOA jobs<\/option>/);
    assert.match(visibleText(jobs.html), /No tasks match on this page/);
  });

  test('pages follow each other by cursor', async () => {
    const first = await browser.get('/app/tasks?limit=2');
    assert.equal((first.html.match(/<tr data-task-id/g) ?? []).length, 2);
    const older = /<a href="([^"]+)" rel="next">Older tasks/.exec(first.html)?.[1]?.replace(/&amp;/g, '&');
    assert.ok(older, 'a link to the older tasks');
    const second = await browser.get(older);
    assert.equal((second.html.match(/<tr data-task-id/g) ?? []).length, 1);
    assert.match(visibleText(second.html), /← Newest/);
    assert.doesNotMatch(second.html, /Older tasks/);
  });

  test('an invalid filter is explained, not an error page', async () => {
    const page = await browser.get('/app/tasks?status=sleeping');
    assert.equal(page.status, 422);
    assert.match(visibleText(page.html), /status must be one of queued, in_progress, success, failed, canceled/);
  });

  test('a viewer is offered no New task button', async () => {
    assert.match((await ownerBrowser.get('/app/tasks')).html, /href="\/app\/tasks\/new"/);
    assert.doesNotMatch((await viewerBrowser.get('/app/tasks')).html, /href="\/app\/tasks\/new"/);
  });
});

describe('a task page', () => {
  test('shows the payload, timings, retries, the chain and the audit trail', async () => {
    const task = await createTask(app, owner.token, {
      payload: slackPayload('#detail', 'hello <b>world</b>'),
      max_retries: 2,
      delay_seconds: 3600,
      on_success_next_task: { payload: { action: 'delay', seconds: 5 }, on_success_next_task: { payload: slackPayload('#after') } },
    });
    const page = await ownerBrowser.get(`/app/tasks/${task.id}`);
    assert.equal(page.status, 200);
    const text = visibleText(page.html);
    assert.match(page.html, /&quot;message&quot;: &quot;hello &lt;b&gt;world&lt;\/b&gt;&quot;/, 'payload as escaped, pretty JSON');
    assert.match(text, /Created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d Scheduled for \d{4}-\d\d-\d\d \d\d:\d\d:\d\d Started — Finished — Pickup waiting/);
    assert.match(text, /Used 0 of 2 Schedule after 10 s, 30 s Timeout none/);
    assert.match(text, /Not created yet: delay, when the step before succeeds Not created yet: post_to_slack/);
    assert.match(text, /Parent none Next delay, on success Retry of none Retried as none/);
    assert.match(text, new RegExp(`Task created by user ${owner.userId} in tenant ${owner.tenantId}`));
    assert.match(text, /Task scheduled to run at/);
    assert.match(text, /No result yet/);
  });

  test('members get Cancel on a queued task; a viewer gets no button at all', async () => {
    const task = await createTask(app, owner.token, { payload: slackPayload('#buttons') });
    const mine = await ownerBrowser.get(`/app/tasks/${task.id}`);
    assert.match(mine.html, new RegExp(`action="/app/tasks/${task.id}/cancel"`));
    assert.doesNotMatch(mine.html, /\/retry"/);
    const theirs = await viewerBrowser.get(`/app/tasks/${task.id}`);
    assert.equal(theirs.status, 200);
    assert.doesNotMatch(theirs.html, /<button type="submit" class="button (danger|primary)"/);
    assert.doesNotMatch(theirs.html, /\/cancel"|\/retry"/);
    // And the form a viewer cannot see is refused if posted all the same.
    const refused = await viewerBrowser.post(`/app/tasks/${task.id}/cancel`);
    assert.equal(refused.status, 403);
    assert.match(visibleText(refused.html), /This needs the member role, and yours is viewer/);
    assert.equal((await getTask(app, owner.token, task.id)).status, 'queued');
  });

  test('cancel, then retry, through the buttons', async () => {
    const task = await createTask(app, owner.token, { payload: slackPayload('#cancel-retry') });
    await ownerBrowser.get(`/app/tasks/${task.id}`);
    const canceled = await ownerBrowser.post(`/app/tasks/${task.id}/cancel`);
    assert.equal(canceled.status, 303);
    const afterCancel = await ownerBrowser.get(canceled.location!);
    assert.match(visibleText(afterCancel.html), /Task canceled\./);
    assert.match(afterCancel.html, /data-status="canceled"/);
    assert.match(afterCancel.html, new RegExp(`action="/app/tasks/${task.id}/retry"`));
    assert.equal((await getTask(app, owner.token, task.id)).status, 'canceled');

    const retried = await ownerBrowser.post(`/app/tasks/${task.id}/retry`);
    assert.equal(retried.status, 303);
    const retryId = /\/app\/tasks\/([0-9a-f-]{36})\?notice=retried/.exec(retried.location ?? '')?.[1];
    assert.ok(retryId, retried.location ?? '');
    const retryPage = visibleText((await ownerBrowser.get(retried.location!)).html);
    assert.match(retryPage, /Retry created: this is the new task/);
    assert.match(retryPage, new RegExp(`Retry of ${task.id.slice(0, 8)}`));
    assert.match(visibleText((await ownerBrowser.get(`/app/tasks/${task.id}`)).html), new RegExp(`Retried as ${retryId.slice(0, 8)} Queued`));

    // A second cancel of the finished task explains itself on the task's page.
    const again = await ownerBrowser.post(`/app/tasks/${task.id}/cancel`);
    assert.equal(again.status, 409);
    assert.match(visibleText(again.html), /Task cannot be canceled in status canceled/);
  });

  test("another tenant's task, an unknown id and a malformed one are the same not-found page", async () => {
    const foreign = await createTask(app, stranger.token, { payload: slackPayload('#foreign') });
    for (const id of [foreign.id, '00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      const page = await ownerBrowser.get(`/app/tasks/${id}`);
      assert.equal(page.status, 404, id);
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
      assert.match(visibleText(page.html), /Task not found No task with this id exists in your tenant/);
      assert.doesNotMatch(page.html, /#foreign/);
    }
    await ownerBrowser.get('/app/tasks');
    assert.equal((await ownerBrowser.post(`/app/tasks/${foreign.id}/cancel`)).status, 404);
    assert.equal((await getTask(app, stranger.token, foreign.id)).status, 'queued');
  });
});

describe('the new-task form', () => {
  test('has the fields of every action and of the task options, labelled', async () => {
    const page = await ownerBrowser.get('/app/tasks/new');
    assert.equal(page.status, 200);
    for (const id of ['s0-action', 's0-a-post_to_slack-channel', 's0-a-post_to_slack-message', 's0-a-http_request-url', 's0-a-http_request-method', 's0-a-delay-seconds', 's0-delay_seconds', 's0-run_at', 's0-max_retries', 's0-timeout_seconds', 's0-callback_url']) {
      assert.match(page.html, new RegExp(`<label for="${id}">`), id);
      assert.match(page.html, new RegExp(`id="${id}"`), id);
    }
  });

  test('shows validation messages next to the fields, keeping what was typed', async () => {
    await ownerBrowser.get('/app/tasks/new');
    const fields = { steps: '1', intent: 'create', 's0.action': 'post_to_slack', 's0.a.post_to_slack.channel': '#typed' };
    const missing = await ownerBrowser.post('/app/tasks/new', { ...fields, 's0.a.post_to_slack.message': '' });
    assert.equal(missing.status, 422);
    assert.match(missing.html, /id="s0-a-post_to_slack-message"[^>]*aria-invalid="true"[^>]*aria-describedby="s0-a-post_to_slack-message-error"/);
    assert.match(missing.html, /id="s0-a-post_to_slack-message-error">message is required</);
    assert.match(missing.html, /id="s0-a-post_to_slack-channel"[^>]*value="#typed"/);
    assert.match(missing.html, /<details class="options">/, 'options without values or errors stay closed');

    const both = await ownerBrowser.post('/app/tasks/new', {
      ...fields,
      's0.a.post_to_slack.message': 'hi',
      's0.delay_seconds': '10',
      's0.run_at': new Date(Date.now() + 86_400_000).toISOString().slice(0, 16),
    });
    assert.equal(both.status, 422);
    assert.match(both.html, /id="s0-run_at-error">Give either delay_seconds or run_at, not both</);
    assert.match(both.html, /<details class="options" open="">/, 'the options with an error are open');
  });

  test('adds and removes chained steps without losing values, then creates the chain', async () => {
    await ownerBrowser.get('/app/tasks/new');
    const step1 = { 's0.action': 'post_to_slack', 's0.a.post_to_slack.channel': '#first', 's0.a.post_to_slack.message': 'one' };
    const two = await ownerBrowser.post('/app/tasks/new', { steps: '1', intent: 'add', ...step1 });
    assert.equal(two.status, 200);
    assert.match(visibleText(two.html), /Step 2 · runs when step 1 succeeds/);
    assert.match(two.html, /id="s0-a-post_to_slack-channel"[^>]*value="#first"/);
    assert.match(two.html, /id="s1-action"[^>]*autofocus=""/, 'the new step has the focus');
    const step2 = { 's1.action': 'delay', 's1.a.delay.seconds': '1' };
    const three = await ownerBrowser.post('/app/tasks/new', { steps: '2', intent: 'add', ...step1, ...step2 });
    assert.match(visibleText(three.html), /Step 3/);
    const removed = await ownerBrowser.post('/app/tasks/new', { steps: '3', intent: 'remove:1', ...step1, ...step2, 's2.action': 'post_to_slack', 's2.a.post_to_slack.channel': '#third' });
    assert.doesNotMatch(visibleText(removed.html), /Step 3/);
    assert.match(removed.html, /id="s1-a-post_to_slack-channel"[^>]*value="#third"/, 'the third step moved up');

    const step3 = { 's2.action': 'post_to_slack', 's2.a.post_to_slack.channel': '#last', 's2.a.post_to_slack.message': 'three', 's2.max_retries': '1' };
    const created = await ownerBrowser.post('/app/tasks/new', { steps: '3', intent: 'create', ...step1, ...step2, ...step3 });
    assert.equal(created.status, 303, created.html);
    const id = /^\/app\/tasks\/([0-9a-f-]{36})\?notice=created$/.exec(created.location ?? '')?.[1];
    assert.ok(id, created.location ?? '');
    const task = await getTask(app, owner.token, id);
    assert.deepEqual(task.payload, { action: 'post_to_slack', channel: '#first', message: 'one' });
    assert.deepEqual(task.on_success_next_task, {
      payload: { action: 'delay', seconds: 1 },
      on_success_next_task: { payload: { action: 'post_to_slack', channel: '#last', message: 'three' }, max_retries: 1 },
    });
    assert.match(visibleText((await ownerBrowser.get(created.location!)).html), /Task created\./);
  });

  test('is for members: a viewer gets a refusal page', async () => {
    const page = await viewerBrowser.get('/app/tasks/new');
    assert.equal(page.status, 403);
    assert.match(visibleText(page.html), /This needs the member role/);
  });
});

describe('the AOA page', () => {
  test('shows the DCL state, and the buttons to members only', async () => {
    const page = await ownerBrowser.get('/app/aoa');
    assert.equal(page.status, 200);
    assert.match(visibleText(page.html), /Legacy DCL state Answered with status 200\. \{ "ok": true \}/);
    assert.match(visibleText(page.html), /No job is queued or running/);
    for (const label of ['Run', 'Reset', 'Production mode on', 'Production mode off']) assert.match(page.html, new RegExp(`>${label}</button>`));
    const viewed = await viewerBrowser.get('/app/aoa');
    assert.equal(viewed.status, 200);
    assert.deepEqual(viewed.html.match(/<button[^>]*>[^<]*/g), ['<button type="submit" class="button plain">Sign out'], 'a viewer gets no button but Sign out');
  });

  test('starts a job, shows it with its progress, and explains why a second one is refused', async () => {
    const user = await registerAndLogin(app, 'aoa');
    const browser = await signedInBrowser(app, user);
    await browser.get('/app/aoa');
    const started = await browser.post('/app/aoa/run');
    assert.equal(started.status, 303);
    const page = visibleText((await browser.get(started.location!)).html);
    assert.match(page, /Job queued\. See the job \./);
    assert.match(page, /Active job Run \(connect\) Queued/);
    assert.match(page, /Queued Running Finished/);
    assert.match(page, /AOA job aoa_connect requested by user/);
    const second = await browser.post('/app/aoa/prod-mode', { enabled: 'true' });
    assert.equal(second.status, 409);
    assert.match(visibleText(second.html), /An AOA job is already running for your tenant; wait for it to finish, then try again\. See the job \./);
  });
});

describe('the settings page', () => {
  test('is for admins: others have no link to it and are refused', async () => {
    assert.match((await ownerBrowser.get('/app/tasks')).html, /href="\/app\/settings"/);
    const member = await joinTenant(app, owner, 'member');
    const memberBrowser = await signedInBrowser(app, member);
    assert.doesNotMatch((await memberBrowser.get('/app/tasks')).html, /href="\/app\/settings"/);
    assert.equal((await memberBrowser.get('/app/settings')).status, 403);
    assert.equal((await viewerBrowser.get('/app/settings')).status, 403);
    await memberBrowser.get('/app/tasks');
    assert.equal((await memberBrowser.post('/app/settings/api-keys', { name: 'mine', role: 'member' })).status, 403);
  });

  test('lists the members; an owner changes a role and removes a member', async () => {
    const member = await joinTenant(app, owner, 'member', 'promoted');
    const page = await ownerBrowser.get('/app/settings');
    assert.equal(page.status, 200);
    assert.match(visibleText(page.html), new RegExp(`${owner.email} \\(you\\)`));
    assert.match(page.html, new RegExp(`<label class="visually-hidden" for="role-${member.userId}">Role of ${member.email}</label>`));
    const changed = await ownerBrowser.post(`/app/settings/members/${member.userId}/role`, { role: 'admin' });
    assert.equal(changed.status, 303);
    assert.equal((await app.get('/api/v1/auth/me', { token: member.token })).body.role, 'admin');
    await ownerBrowser.get('/app/settings');
    const removed = await ownerBrowser.post(`/app/settings/members/${member.userId}/remove`);
    assert.equal(removed.status, 303);
    assert.match(visibleText((await ownerBrowser.get(removed.location!)).html), /Member removed\./);
    assert.equal((await app.get('/api/v1/auth/me', { token: member.token })).status, 401);
  });

  test('an invitation link is shown once, and the invitation can be revoked', async () => {
    await ownerBrowser.get('/app/settings');
    const invalid = await ownerBrowser.post('/app/settings/invitations', { email: 'nope', role: 'member' });
    assert.equal(invalid.status, 422);
    assert.match(invalid.html, /id="invite-email-error">Email must be a valid email address</);
    const email = `invited-${uniqueSuffix()}@example.com`;
    const created = await ownerBrowser.post('/app/settings/invitations', { email, role: 'viewer' });
    assert.equal(created.status, 201);
    const link = /<code class="secret" id="invitation-link">([^<]+)<\/code>/.exec(created.html)?.[1]?.replace(/&amp;/g, '&');
    assert.ok(link, 'the link is on the page');
    assert.match(link, new RegExp(`^${app.url}/app/join\\?token=inv_`));
    assert.doesNotMatch((await ownerBrowser.get('/app/settings')).html, /id="invitation-link"/, 'shown only once');
    const invitation = (await app.get('/api/v1/tenant/invitations', { token: owner.token })).body.invitations.find((found: any) => found.email === email);
    const revoked = await ownerBrowser.post(`/app/settings/invitations/${invitation.id}/revoke`);
    assert.equal(revoked.status, 303);
    const joining = new DashboardBrowser(app);
    await joining.get(new URL(link).pathname + new URL(link).search);
    const refused = await joining.post('/app/join', { invite_token: new URL(link).searchParams.get('token')!, email, password: 'correct horse battery' });
    assert.equal(refused.status, 400);
  });

  test('an API key is shown once, works against the API, and stops when revoked', async () => {
    await ownerBrowser.get('/app/settings');
    const created = await ownerBrowser.post('/app/settings/api-keys', { name: 'Dashboard key', role: 'viewer' });
    assert.equal(created.status, 201);
    const key = /<code class="secret" id="new-api-key">([^<]+)<\/code>/.exec(created.html)?.[1];
    assert.ok(key?.startsWith('ak_'), created.html);
    assert.equal((await app.get('/api/v1/tasks', { token: key })).status, 200);
    const listed = await ownerBrowser.get('/app/settings');
    assert.ok(!listed.html.includes(key!), 'the key is not shown again');
    assert.match(visibleText(listed.html), /Dashboard key ak_\S+… viewer (never|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) Revoke/);
    const keyId = (await app.get('/api/v1/tenant/api-keys', { token: owner.token })).body.api_keys.find((found: any) => found.name === 'Dashboard key').id;
    assert.equal((await ownerBrowser.post(`/app/settings/api-keys/${keyId}/revoke`)).status, 303);
    assert.equal((await app.get('/api/v1/tasks', { token: key })).status, 401);
  });

  test('the Slack integration is saved, shown masked, and removed', async () => {
    await ownerBrowser.get('/app/settings');
    const invalid = await ownerBrowser.post('/app/settings/slack', { webhook_url: 'http://hooks.example.com/x', default_channel: '', allowed_channels: '' });
    assert.equal(invalid.status, 422);
    assert.match(invalid.html, /id="slack-webhook_url-error">webhook_url must use https</);
    const saved = await ownerBrowser.post('/app/settings/slack', {
      webhook_url: 'https://hooks.slack.com/services/T000/B000/SECRETSECRET1234',
      default_channel: '#general',
      allowed_channels: '#general\n#alerts',
    });
    assert.equal(saved.status, 303, saved.html);
    const page = await ownerBrowser.get(saved.location!);
    assert.match(visibleText(page.html), /Slack integration saved\. .*Webhook https:\/\/hooks\.slack\.com\/\*\*\*\*1234 Default channel #general Allowed channels #general, #alerts/);
    assert.doesNotMatch(page.html, /SECRETSECRET/);
    assert.equal((await ownerBrowser.post('/app/settings/slack/remove')).status, 303);
    assert.match(visibleText((await ownerBrowser.get('/app/settings')).html), /Not set up/);
  });

  test('the webhook secret is rotated', async () => {
    const before = (await app.get('/api/v1/tenant/webhook-secret', { token: owner.token })).body.secret;
    await ownerBrowser.get('/app/settings');
    const rotated = await ownerBrowser.post('/app/settings/webhook-secret/rotate');
    assert.equal(rotated.status, 303);
    const page = await ownerBrowser.get(rotated.location!);
    assert.match(visibleText(page.html), /Webhook secret rotated\./);
    assert.match(visibleText(page.html), /Previous secret still signs until \d{4}-/);
    const after = (await app.get('/api/v1/tenant/webhook-secret', { token: owner.token })).body.secret;
    assert.notEqual(after, before);
    assert.ok(page.html.includes(after), 'the new secret is on the page');
  });
});

describe('live updates', () => {
  /** Reads the dashboard's event stream with `browser`'s cookies until `done(text)` holds. */
  async function readStream(browser: DashboardBrowser, done: (text: string) => boolean, trigger: () => Promise<unknown>) {
    const abort = new AbortController();
    const cookie = [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    const response = await fetch(`${app.url}/app/events`, { headers: { Cookie: cookie, Accept: 'text/event-stream' }, signal: abort.signal });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    let text = '';
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of response.body!) {
        text += decoder.decode(chunk, { stream: true });
        if (done(text)) return;
      }
    })().catch(() => {});
    try {
      await trigger();
      await eventually(() => (done(text) ? true : undefined), { timeoutMs: 10_000, message: 'the event' });
      return text;
    } finally {
      abort.abort();
      await reading;
    }
  }

  test("the dashboard's stream carries the tenant's task events, with the session cookie", async () => {
    let taskId = '';
    const text = await readStream(
      ownerBrowser,
      (received) => taskId !== '' && received.includes(taskId),
      async () => {
        taskId = (await createTask(app, owner.token, { payload: slackPayload('#live') })).id;
      },
    );
    assert.match(text, new RegExp(`event: task.created\\ndata: \\{"id":"${taskId}"`));
  });

  test('without a session the stream is not opened', async () => {
    const response = await fetch(`${app.url}/app/events`, { redirect: 'manual' });
    assert.equal(response.status, 303);
    assert.equal(response.headers.get('location'), '/app/login');
  });

  test('pages that show tasks say so to the script; the others do not', async () => {
    assert.match((await ownerBrowser.get('/app/tasks')).html, /<body data-live="tasks" data-events="\/app\/events">/);
    assert.match((await ownerBrowser.get('/app/aoa')).html, /<body data-live="aoa"/);
    assert.match((await ownerBrowser.get('/app/tasks/new')).html, /<body>/);
  });
});

describe('pages and their files', () => {
  test('every page is HTML with a strict CSP, no inline script, a language, a title and one heading', async () => {
    const task = await createTask(app, owner.token, { payload: slackPayload('#pages') });
    const anonymous = new DashboardBrowser(app);
    const pages = [
      await anonymous.get('/app/login'),
      await anonymous.get('/app/register'),
      await anonymous.get('/app/join'),
      await ownerBrowser.get('/app/tasks'),
      await ownerBrowser.get(`/app/tasks/${task.id}`),
      await ownerBrowser.get('/app/tasks/new'),
      await ownerBrowser.get('/app/aoa'),
      await ownerBrowser.get('/app/settings'),
      await ownerBrowser.get('/app/no-such-page'),
    ];
    for (const page of pages) {
      assert.match(page.headers.get('content-type') ?? '', /^text\/html; charset=UTF-8/i);
      const csp = page.headers.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'(;|$)/);
      assert.match(csp, /style-src 'self'(;|$)/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.equal(page.headers.get('cache-control'), 'no-store');
      assert.match(page.html, /^<!doctype html><html lang="en">/);
      assert.match(page.html, /<title>[^<]+ · AutonomOS<\/title>/);
      assert.equal((page.html.match(/<h1[ >]/g) ?? []).length, 1);
      for (const script of page.html.match(/<script[^>]*>/g) ?? []) assert.match(script, / src="\/app\/assets\/dashboard\.js\?v=/);
      assert.doesNotMatch(page.html, / style=| on[a-z]+=/, 'no inline style or event handler');
    }
    assert.equal(pages.at(-1)!.status, 404);
  });

  test('the stylesheet, script and icon are ours, versioned and cached for good', async () => {
    const page = await ownerBrowser.get('/app/tasks');
    const urls = [...page.html.matchAll(/(?:href|src)="(\/app\/assets\/[^"]+)"/g)].map((match) => match[1]!);
    assert.equal(urls.length, 3);
    const types = { css: 'text/css', js: 'text/javascript', svg: 'image/svg+xml' } as const;
    for (const url of urls) {
      const response = await fetch(`${app.url}${url}`);
      assert.equal(response.status, 200, url);
      assert.equal(response.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      const extension = /\.(css|js|svg)\?/.exec(url)![1] as keyof typeof types;
      assert.ok((response.headers.get('content-type') ?? '').startsWith(types[extension]), url);
    }
    assert.equal((await fetch(`${app.url}/app/assets/nope.js`)).status, 404);
    assert.equal((await fetch(`${app.url}/app/assets/..%2Fsession.ts`)).status, 404);
  });
});
