import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createTask, getTask, logMessages, tenantTasks, waitForLog, waitForStatus } from './helpers/engine.js';
import { eventually } from './helpers/poll.js';
import { registerAndLogin, uniqueSuffix, type RegisteredUser } from './helpers/users.js';

// The http_request action: one request to a URL the tenant chose, with the callbacks' SSRF guard
// (public addresses only unless CALLBACK_ALLOW_PRIVATE_NETWORKS, never the operator's Slack or DCL
// hosts, no redirects), the attempt's timeout and HTTP_REQUEST_TIMEOUT_SECONDS, a result holding
// the status, a few headers and the first 4 KB of the body. The target below listens on
// 127.0.0.1, so most tests use an app that allows private networks.

interface Seen {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The client went away before the answer. */
  aborted: boolean;
}

const OK_BODY = JSON.stringify({ created: true });
const HUGE_BODY_BYTES = 1024 * 1024;

/**
 * A local server answering by the path's first segment: /ok (201 with headers of every kind),
 * /status/{code}, /flaky (500 once, then 200), /hang (never), /huge (1 MiB, a NUL byte second),
 * /redirect (302 to /ok). Each test adds a segment of its own, so its requests stay apart.
 */
async function startTarget() {
  const requests: Seen[] = [];
  const flakyAnswered = new Set<string>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const path = req.url ?? '';
      const seen: Seen = { method: req.method ?? '', path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), aborted: false };
      requests.push(seen);
      res.on('close', () => {
        if (!res.writableFinished) seen.aborted = true;
      });
      const [kind, argument] = path.split('/').slice(1);
      if (kind === 'ok') {
        res.writeHead(201, {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(OK_BODY),
          ETag: '"v1"',
          Location: '/things/1',
          'Set-Cookie': 'session=server-secret',
          'X-Internal': 'not kept',
        });
        res.end(OK_BODY);
      } else if (kind === 'status') {
        res.writeHead(Number(argument), { 'Content-Type': 'text/plain' });
        res.end(`answered ${argument}`);
      } else if (kind === 'flaky') {
        const first = !flakyAnswered.has(path);
        flakyAnswered.add(path);
        res.writeHead(first ? 500 : 200, { 'Content-Type': 'text/plain' });
        res.end(first ? 'down' : 'up');
      } else if (kind === 'huge') {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        res.end(Buffer.concat([Buffer.from('a\u0000'), Buffer.alloc(HUGE_BODY_BYTES, 'x')]));
      } else if (kind === 'redirect') {
        res.writeHead(302, { Location: `/ok/after-${argument}` });
        res.end();
      } else if (kind !== 'hang') {
        res.writeHead(404);
        res.end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests,
    /** The requests whose path starts with `prefix`. */
    seen: (prefix: string) => requests.filter((request) => request.path.startsWith(prefix)),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let target: Awaited<ReturnType<typeof startTarget>>;

before(async () => {
  target = await startTarget();
});

after(async () => {
  await target?.close();
});

function request(method: string, path: string, extra: Record<string, unknown> = {}) {
  return { action: 'http_request', method, url: `${target.url}${path}`, ...extra };
}

async function finished(app: TestApp, user: RegisteredUser, id: string, timeoutMs = 10_000) {
  return waitForStatus(app, user.token, id, ['success', 'failed'], timeoutMs);
}

describe('http_request (private networks allowed)', () => {
  let app: TestApp;

  before(async () => {
    app = await startTestApp({
      env: {
        CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
        HTTP_REQUEST_TIMEOUT_SECONDS: '2',
        RETRY_DELAYS_SECONDS: '1',
        // Only their hosts matter: requests there are refused before anything is sent.
        SLACK_WEBHOOK_URL: 'http://slack.operator.test/hook',
        LEGACY_DCL_BASE_URL: 'http://dcl.operator.test:8080',
      },
      worker: true,
    });
  });

  after(async () => {
    await app?.close();
  });

  test('a POST with headers and json succeeds with the status, the kept headers and the body; no header value is audited', async () => {
    const user = await registerAndLogin(app, 'http-ok');
    const path = `/ok/${uniqueSuffix()}?q=1`;
    const payload = request('POST', path, { headers: { Authorization: 'Bearer tenant-secret', 'X-Trace': 'trace-value-xyz' }, json: { hello: 'world' } });
    const task = await createTask(app, user.token, { payload });
    assert.deepEqual(task.payload, payload, 'the task JSON shows the payload as sent');

    const done = await finished(app, user, task.id);
    assert.equal(done.status, 'success', JSON.stringify(done.result));
    assert.deepEqual(done.result, {
      status: 201,
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(OK_BODY)), location: '/things/1', etag: '"v1"' },
      body: OK_BODY,
      body_truncated: false,
    });

    const [seen] = target.seen(path);
    assert.ok(seen);
    assert.equal(target.seen(path).length, 1);
    assert.equal(seen.method, 'POST');
    assert.equal(seen.headers.authorization, 'Bearer tenant-secret');
    assert.equal(seen.headers['x-trace'], 'trace-value-xyz');
    assert.match(String(seen.headers['content-type']), /^application\/json/);
    assert.equal(seen.headers.accept, 'application/json');
    assert.equal(seen.headers['user-agent'], 'AutonomOS', 'the service names itself');
    assert.deepEqual(JSON.parse(seen.body), { hello: 'world' });

    const messages = await logMessages(app, task.id);
    assert.deepEqual(messages.slice(1), [
      'Task execution started',
      `Sending HTTP request POST ${target.url}${path}`,
      'HTTP request answered with status 201',
    ]);
    assert.ok(!messages.some((message) => message.includes('tenant-secret') || message.includes('trace-value-xyz')), JSON.stringify(messages));

    const metrics = (await app.metrics.render()).body;
    assert.match(metrics, /autonomos_tasks_succeeded_total\{kind="task",action="http_request"\} [1-9]/);
  });

  test("a tenant's own User-Agent and Accept are sent as they are, once", async () => {
    const user = await registerAndLogin(app, 'http-own-headers');
    const path = `/ok/${uniqueSuffix()}`;
    const task = await createTask(app, user.token, { payload: request('GET', path, { headers: { 'User-Agent': 'tenant-agent/1.0', ACCEPT: 'text/plain' } }) });
    assert.equal((await finished(app, user, task.id)).status, 'success');
    const [seen] = target.seen(path);
    assert.ok(seen);
    assert.equal(seen.headers['user-agent'], 'tenant-agent/1.0');
    assert.equal(seen.headers.accept, 'text/plain');
  });

  test('every method reaches the server as itself; HEAD and GET send no body', async () => {
    const user = await registerAndLogin(app, 'http-methods');
    const suffix = uniqueSuffix();
    const methods = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
    const tasks = await Promise.all(
      methods.map((method) =>
        createTask(app, user.token, { payload: request(method, `/ok/${suffix}-${method}`, method === 'GET' || method === 'HEAD' ? {} : { json: [method] }) }),
      ),
    );
    for (const [index, method] of methods.entries()) {
      const done = await finished(app, user, tasks[index].id);
      assert.equal(done.status, 'success', `${method}: ${JSON.stringify(done.result)}`);
      assert.equal(done.result.status, 201);
      assert.equal(done.result.body, method === 'HEAD' ? '' : OK_BODY);
      const [seen] = target.seen(`/ok/${suffix}-${method}`);
      assert.equal(seen?.method, method);
      assert.equal(seen.body, method === 'GET' || method === 'HEAD' ? '' : JSON.stringify([method]));
    }
  });

  test('an answer other than 2xx fails the attempt, which is retried', async () => {
    const user = await registerAndLogin(app, 'http-retry');
    const path = `/flaky/${uniqueSuffix()}`;
    const task = await createTask(app, user.token, { payload: request('GET', path), max_retries: 2 });

    const done = await finished(app, user, task.id);
    assert.equal(done.status, 'success');
    assert.equal(done.retry_count, 1);
    assert.equal(done.result.status, 200);
    assert.equal(done.result.body, 'up');
    assert.equal(target.seen(path).length, 2);
    const messages = await logMessages(app, task.id);
    assert.deepEqual(messages.slice(1), [
      'Task execution started',
      `Sending HTTP request GET ${target.url}${path}`,
      'Task failed with error: HTTP request answered with status 500, expected 2xx',
      'Scheduling retry 1/2',
      'Task execution started',
      `Sending HTTP request GET ${target.url}${path}`,
      'HTTP request answered with status 200',
    ]);
  });

  test('with no retries left, an answer other than 2xx fails the task', async () => {
    const user = await registerAndLogin(app, 'http-404');
    const task = await createTask(app, user.token, { payload: request('DELETE', `/status/404/${uniqueSuffix()}`) });
    const done = await finished(app, user, task.id);
    assert.equal(done.status, 'failed');
    assert.deepEqual(done.result, { error: 'HTTP request answered with status 404, expected 2xx' });
    assert.equal((await logMessages(app, task.id)).at(-1), 'Task permanently failed after all retries');
  });

  test('expect_status names the one status that succeeds, 2xx included', async () => {
    const user = await registerAndLogin(app, 'http-expect');
    const gone = await createTask(app, user.token, { payload: request('GET', `/status/410/${uniqueSuffix()}`, { expect_status: 410 }) });
    const created = await createTask(app, user.token, { payload: request('POST', `/status/200/${uniqueSuffix()}`, { expect_status: 201, json: {} }) });

    const goneDone = await finished(app, user, gone.id);
    assert.equal(goneDone.status, 'success');
    assert.equal(goneDone.result.status, 410);
    assert.equal(goneDone.result.body, 'answered 410');
    const createdDone = await finished(app, user, created.id);
    assert.equal(createdDone.status, 'failed');
    assert.deepEqual(createdDone.result, { error: 'HTTP request answered with status 200, expected 201' });
  });

  test("a server that never answers is given up at the task's timeout_seconds, and otherwise at HTTP_REQUEST_TIMEOUT_SECONDS", async () => {
    const user = await registerAndLogin(app, 'http-timeout');
    const [short, long] = [`/hang/${uniqueSuffix()}`, `/hang/${uniqueSuffix()}`];
    const bounded = await createTask(app, user.token, { payload: request('GET', short), timeout_seconds: 1 });
    const unbounded = await createTask(app, user.token, { payload: request('GET', long) });

    const boundedDone = await finished(app, user, bounded.id);
    assert.equal(boundedDone.status, 'failed');
    assert.deepEqual(boundedDone.result, { error: 'Task timed out after 1 seconds' });
    const ran = Date.parse(boundedDone.finished_at) - Date.parse(boundedDone.started_at);
    assert.ok(ran >= 1_000, `ran ${ran} ms`);

    const unboundedDone = await finished(app, user, unbounded.id);
    assert.equal(unboundedDone.status, 'failed');
    assert.deepEqual(unboundedDone.result, { error: 'No answer within 2 s' });
    // Both requests were abandoned, not left open.
    await eventually(() => (target.seen(short)[0]?.aborted && target.seen(long)[0]?.aborted ? true : undefined), {
      timeoutMs: 2_000,
      message: 'both hanging requests closed',
    });
  });

  test('a huge body is cut at 4 KB, marked truncated, and stored as text even with NUL bytes in it', async () => {
    const user = await registerAndLogin(app, 'http-huge');
    const task = await createTask(app, user.token, { payload: request('GET', `/huge/${uniqueSuffix()}`) });
    const done = await finished(app, user, task.id);
    assert.equal(done.status, 'success', JSON.stringify(done.result));
    assert.equal(done.result.body_truncated, true);
    assert.equal(done.result.body, `a\ufffd${'x'.repeat(4094)}`);
    assert.equal(done.result.headers['content-type'], 'application/octet-stream');
  });

  test('a redirect is not followed: it is the answer, a failure unless expected', async () => {
    const user = await registerAndLogin(app, 'http-redirect');
    const [plain, expected] = [uniqueSuffix(), uniqueSuffix()];
    const followed = await createTask(app, user.token, { payload: request('GET', `/redirect/${plain}`) });
    const accepted = await createTask(app, user.token, { payload: request('GET', `/redirect/${expected}`, { expect_status: 302 }) });

    const followedDone = await finished(app, user, followed.id);
    assert.equal(followedDone.status, 'failed');
    assert.deepEqual(followedDone.result, { error: 'HTTP request answered with status 302, expected 2xx' });
    const acceptedDone = await finished(app, user, accepted.id);
    assert.equal(acceptedDone.status, 'success');
    assert.equal(acceptedDone.result.status, 302);
    assert.equal(acceptedDone.result.headers.location, `/ok/after-${expected}`);
    assert.equal(target.seen(`/ok/after-${plain}`).length + target.seen(`/ok/after-${expected}`).length, 0, 'the Location was never requested');
  });

  test("the operator's Slack and DCL hosts are refused at creation with 422, on any port and in chains", async () => {
    const user = await registerAndLogin(app, 'http-operator');
    for (const [url, loc] of [
      ['http://slack.operator.test/other', ['body', 'payload', 'url']],
      ['https://SLACK.operator.test.:8443/x', ['body', 'payload', 'url']],
      ['http://dcl.operator.test/reset', ['body', 'on_success_next_task', 'payload', 'url']],
    ] as const) {
      const payload = { action: 'http_request', method: 'POST', url, json: {} };
      const body = loc.length === 3 ? { payload } : { payload: request('GET', '/ok/first'), on_success_next_task: { payload } };
      const response = await app.post('/api/v1/tasks', body, { token: user.token });
      assert.equal(response.status, 422, JSON.stringify(response.body));
      assert.deepEqual(response.body.detail, [
        { loc, msg: 'url is refused: the target is a host this service itself calls (Slack or the Legacy DCL)', type: 'operator_host' },
      ]);
    }
    assert.equal((await tenantTasks(app, user.tenantId)).length, 0, 'nothing was stored');
  });
});

describe('http_request with the default configuration (SSRF guard, validation)', () => {
  let app: TestApp;

  before(async () => {
    app = await startTestApp({ worker: true });
    assert.equal(app.config.callbackAllowPrivateNetworks, false);
  });

  after(async () => {
    await app?.close();
  });

  test('an IP literal outside the public internet is refused at creation with 422, in chains too, and nothing is stored', async () => {
    const user = await registerAndLogin(app, 'http-literal');
    const port = new URL(target.url).port;
    for (const host of [`127.0.0.1:${port}`, `[::ffff:127.0.0.1]:${port}`, '169.254.169.254', '[fd00::1]', '10.0.0.7:8080']) {
      const payload = { action: 'http_request', method: 'GET', url: `http://${host}/latest/meta-data` };
      for (const [body, loc] of [
        [{ payload }, ['body', 'payload', 'url']],
        [{ payload: { action: 'delay', seconds: 1 }, on_success_next_task: { payload } }, ['body', 'on_success_next_task', 'payload', 'url']],
      ] as const) {
        const response = await app.post('/api/v1/tasks', body, { token: user.token });
        assert.equal(response.status, 422, `${host}: ${JSON.stringify(response.body)}`);
        const [issue, ...others] = response.body.detail;
        assert.equal(others.length, 0);
        assert.deepEqual(issue.loc, loc);
        assert.equal(issue.type, 'public_address');
        assert.match(issue.msg, /^url must reach a public address: .* \(set CALLBACK_ALLOW_PRIVATE_NETWORKS=true to allow private targets\)$/);
      }
    }
    assert.equal((await tenantTasks(app, user.tenantId)).length, 0);
    assert.equal(target.requests.filter((request) => request.path.startsWith('/latest')).length, 0);
  });

  test('a host name that resolves to a private address is refused when sending, and nothing reaches it', async () => {
    const user = await registerAndLogin(app, 'http-resolves-private');
    const path = `/ok/${uniqueSuffix()}`;
    const url = `http://localhost:${new URL(target.url).port}${path}`;
    const task = await createTask(app, user.token, { payload: { action: 'http_request', method: 'GET', url } });

    const done = await finished(app, user, task.id);
    assert.equal(done.status, 'failed');
    const refusal = 'Request refused: the target is not a public address (set CALLBACK_ALLOW_PRIVATE_NETWORKS=true to allow private targets)';
    assert.deepEqual(done.result, { error: refusal });
    const messages = await waitForLog(app, task.id, 'Task permanently failed after all retries');
    assert.ok(messages.includes(`Task failed with error: ${refusal}`));
    assert.ok(!messages.some((message) => message.includes('127.0.0.1') || message.includes('::1')), 'what the name resolved to is not told');
    assert.equal(target.seen(path).length, 0);
  });

  test('invalid payloads are refused with 422 naming the field', async () => {
    const user = await registerAndLogin(app, 'http-invalid');
    const base = { action: 'http_request', method: 'POST', url: 'https://api.example.com/hook' };
    const cases: [Record<string, unknown>, (string | number)[], RegExp][] = [
      [{ headers: { Host: 'internal.example' } }, ['headers', 'Host'], /header Host is set by the service itself/],
      [{ headers: { 'content-length': '5' } }, ['headers', 'content-length'], /set by the service itself/],
      [{ headers: { 'Transfer-Encoding': 'chunked' } }, ['headers', 'Transfer-Encoding'], /set by the service itself/],
      [{ headers: { Connection: 'close' } }, ['headers', 'Connection'], /set by the service itself/],
      [{ headers: { 'X-Injected': 'a\r\nHost: evil' } }, ['headers', 'X-Injected'], /no CR, LF or other control characters/],
      [{ headers: { 'X-Newline': 'a\nb' } }, ['headers', 'X-Newline'], /no CR, LF/],
      [{ headers: { 'Bad Name': 'x' } }, ['headers', 'Bad Name'], /header names must be HTTP tokens/],
      [{ headers: { 'X-Number': 5 } }, ['headers', 'X-Number'], /header values must be strings/],
      [{ headers: { 'X-Long': 'v'.repeat(4097) } }, ['headers', 'X-Long'], /at most 4096 characters/],
      [{ headers: Object.fromEntries(Array.from({ length: 33 }, (_, index) => [`X-H${index}`, 'v'])) }, ['headers'], /at most 32 headers/],
      [{ headers: { 'X-A': '1', 'x-a': '2' } }, ['headers'], /name a header twice/],
      [{ headers: ['X-A: 1'] }, ['headers'], /JSON object of header names and values/],
      [{ method: 'TRACE' }, ['method'], /method must be one of GET, HEAD, POST, PUT, PATCH, DELETE/],
      [{ method: 'get' }, ['method'], /method must be one of/],
      [{ method: 'GET', json: { a: 1 } }, ['json'], /json cannot be sent with GET or HEAD/],
      [{ json: 'text' }, ['json'], /json must be a JSON object or array/],
      [{ url: 'ftp://example.com/file' }, ['url'], /url must use http or https/],
      [{ url: '/relative' }, ['url'], /url must be an absolute URL/],
      [{ url: 'https://user:password@example.com/' }, ['url'], /must not hold a user name or password/],
      [{ expect_status: 99 }, ['expect_status'], /between 100 and 599/],
      [{ expect_status: 200.5 }, ['expect_status'], /must be an integer/],
    ];
    for (const [change, field, message] of cases) {
      const response = await app.post('/api/v1/tasks', { payload: { ...base, ...change } }, { token: user.token });
      assert.equal(response.status, 422, `${JSON.stringify(change)}: ${JSON.stringify(response.body)}`);
      const issue = response.body.detail.find((item: { loc: unknown[] }) => JSON.stringify(item.loc) === JSON.stringify(['body', 'payload', ...field]));
      assert.ok(issue, `${JSON.stringify(change)}: ${JSON.stringify(response.body.detail)}`);
      assert.match(issue.msg, message);
    }
    for (const missing of ['method', 'url']) {
      const { [missing]: _, ...payload } = base as Record<string, unknown>;
      const response = await app.post('/api/v1/tasks', { payload }, { token: user.token });
      assert.equal(response.status, 422);
      assert.deepEqual(response.body.detail[0].loc, ['body', 'payload', missing]);
    }
    assert.equal((await tenantTasks(app, user.tenantId)).length, 0);
  });

  test('the OpenAPI document describes both new actions in the task payload', async () => {
    const doc = (await app.get('/openapi.json')).body;
    const payload = JSON.stringify(doc.paths['/api/v1/tasks'].post.requestBody.content['application/json'].schema.properties.payload);
    for (const word of ['http_request', 'expect_status', 'HEAD', 'delay', 'seconds']) assert.ok(payload.includes(word), `${word} in ${payload}`);
  });

  test('a task JSON shows an http_request payload with its url as the URL parser reads it', async () => {
    const user = await registerAndLogin(app, 'http-normalised');
    const task = await createTask(app, user.token, {
      payload: { action: 'http_request', method: 'GET', url: 'HTTPS://API.Example.COM/a b?x=1' },
      delay_seconds: 3600,
    });
    assert.equal(task.payload.url, 'https://api.example.com/a%20b?x=1');
    assert.deepEqual(await getTask(app, user.token, task.id), task);
  });
});
