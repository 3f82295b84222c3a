import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { anyAddressAgent, publicOnlyAgent, sendOutbound } from '../src/lib/outbound-http.js';
import { assertPublicHost, isPublicAddress, nonPublicCause, NonPublicDestinationError } from '../src/lib/public-address.js';
import { silentLogger } from '../src/logger.js';
import { startWorker } from '../src/worker/worker.js';
import { startTestApp, testConfig, type TestApp } from './helpers/app.js';
import { createTask, newChannel, slackPayload, startFakeSlack, tenantTasks, waitForLog, type FakeSlack } from './helpers/engine.js';
import { startFakeServer, underLocalhostName, type FakeServer } from './helpers/fake-server.js';
import { registerAndLogin } from './helpers/users.js';

// Where outbound calls may go. Callbacks, whose target a tenant chooses, reach only globally
// routable unicast addresses (unless CALLBACK_ALLOW_PRIVATE_NETWORKS=true), and never a host of
// the operator's Slack webhook or Legacy DCL (whatever that setting says). Refused targets are
// 422 at creation when the URL shows it, and refused again when the callback is sent.

/** One address from each special-purpose range, and the edges of some. */
const REFUSED: [address: string, range: string][] = [
  ['0.0.0.0', '"this" network'],
  ['0.255.255.255', '"this" network'],
  ['10.1.2.3', 'private'],
  ['100.64.0.1', 'shared address space'],
  ['100.127.255.254', 'shared address space'],
  ['127.0.0.1', 'loopback'],
  ['169.254.169.254', 'link-local, cloud metadata'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['192.0.0.9', 'IETF protocol assignments (PCP anycast)'],
  ['192.0.0.170', 'IETF protocol assignments (NAT64 discovery)'],
  ['192.0.2.1', 'documentation'],
  ['192.31.196.1', 'AS112'],
  ['192.52.193.1', 'AMT'],
  ['192.88.99.1', '6to4 relay anycast'],
  ['192.168.1.1', 'private'],
  ['192.175.48.1', 'AS112'],
  ['198.18.0.1', 'benchmarking'],
  ['198.19.255.255', 'benchmarking'],
  ['198.51.100.7', 'documentation'],
  ['203.0.113.9', 'documentation'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.255', 'limited broadcast'],
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['::127.0.0.1', 'IPv4-compatible'],
  ['::8.8.8.8', 'IPv4-compatible, even of a public address'],
  ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
  ['::ffff:7f00:1', 'IPv4-mapped loopback, in hex'],
  ['::ffff:a9fe:a9fe', 'IPv4-mapped cloud metadata'],
  ['0:0:0:0:0:ffff:10.0.0.1', 'IPv4-mapped private, uncompressed'],
  ['64:ff9b::10.0.0.1', 'NAT64 of a private address'],
  ['64:ff9b::7f00:1', 'NAT64 of loopback'],
  ['64:ff9b:1::808:808', 'local-use NAT64, even of a public address'],
  ['100::1', 'discard-only'],
  ['2001::1', 'Teredo'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'Teredo'],
  ['2001:1::1', 'IETF protocol assignments (PCP anycast)'],
  ['2001:2::1', 'benchmarking'],
  ['2001:20::1', 'ORCHIDv2'],
  ['2001:1ff:ffff::1', 'IETF protocol assignments, last block'],
  ['2001:db8::1', 'documentation'],
  ['2002:a00:1::1', '6to4 of 10.0.0.1'],
  ['2002:808:808::1', '6to4, even of a public address'],
  ['2620:4f:8000::1', 'AS112'],
  ['3fff::1', 'documentation'],
  ['3fff:fff:ffff::1', 'documentation, last block'],
  ['5f00::1', 'SRv6 segment identifiers'],
  ['fc00::1', 'unique local'],
  ['fd12:3456::1', 'unique local'],
  ['fe80::1', 'link-local'],
  ['fe80::1%eth0', 'link-local, with a zone'],
  ['fec0::1', 'site-local'],
  ['ff02::1', 'multicast'],
  ['4000::1', 'outside global unicast'],
];

const ALLOWED: [address: string, what: string][] = [
  ['8.8.8.8', 'Google DNS'],
  ['1.1.1.1', 'Cloudflare DNS'],
  ['172.32.0.1', 'just past 172.16.0.0/12'],
  ['100.128.0.1', 'just past 100.64.0.0/10'],
  ['198.20.0.1', 'just past 198.18.0.0/15'],
  ['223.255.255.254', 'just below multicast'],
  ['2606:4700:4700::1111', 'Cloudflare DNS'],
  ['2001:4860:4860::8888', 'Google DNS, in 2001::/16 but past 2001::/23'],
  ['2001:200::1', 'just past 2001::/23'],
  ['2a00:1450:4001::1', 'global unicast'],
  ['::ffff:8.8.8.8', 'IPv4-mapped public'],
  ['::ffff:808:808', 'IPv4-mapped public, in hex'],
  ['64:ff9b::8.8.8.8', 'NAT64 of a public address'],
];

describe('which addresses count as public', () => {
  for (const [address, range] of REFUSED) {
    test(`${address} (${range}) is refused`, () => {
      assert.equal(isPublicAddress(address), false);
    });
  }

  for (const [address, what] of ALLOWED) {
    test(`${address} (${what}) is allowed`, () => {
      assert.equal(isPublicAddress(address), true);
    });
  }

  test('what is not an IP address is not public', () => {
    assert.equal(isPublicAddress('example.com'), false);
    assert.equal(isPublicAddress(''), false);
  });

  test('assertPublicHost refuses IP literals outside the allowlist, naming the range; host names wait for their lookup', () => {
    assert.throws(() => assertPublicHost('http://127.0.0.1:8080/x'), { name: 'NonPublicDestinationError', message: '127.0.0.1 is not a public address (loopback)' });
    assert.throws(() => assertPublicHost('http://[2002:a00:1::1]/x'), { name: 'NonPublicDestinationError', message: '2002:a00:1::1 is not a public address (6to4)' });
    assert.throws(() => assertPublicHost('http://169.254.169.254/latest/meta-data'), NonPublicDestinationError);
    // The URL parser's spellings of an address are judged as the address.
    assert.throws(() => assertPublicHost('http://2130706433/x'), NonPublicDestinationError);
    assert.throws(() => assertPublicHost('http://[0:0:0:0:0:ffff:7f00:1]/x'), NonPublicDestinationError);
    assertPublicHost('http://8.8.8.8/x');
    assertPublicHost('https://[2606:4700:4700::1111]/x');
    assertPublicHost('https://example.com/x');
  });
});

describe('the outbound client', () => {
  let server: FakeServer;

  before(async () => {
    server = await startFakeServer();
  });

  after(async () => {
    await server?.close();
  });

  test('through the public-only agent, a name resolving to loopback is refused at connect time and nothing is sent', async () => {
    const port = new URL(server.url).port;
    const failure = await sendOutbound({ method: 'POST', url: `http://localhost:${port}/x`, json: {}, timeoutMs: 5_000, maxBodyBytes: 0, agent: publicOnlyAgent }).then(
      () => undefined,
      (error: unknown) => error,
    );
    assert.ok(nonPublicCause(failure), `refused at connect time, got ${String(failure)}`);
    assert.equal(server.requests.length, 0, 'nothing reached the server');

    const plain = await sendOutbound({ method: 'GET', url: `http://localhost:${port}/x`, timeoutMs: 5_000, maxBodyBytes: 100, agent: anyAddressAgent });
    assert.equal(plain.status, 200, 'the plain agent, for the operator’s own hosts, reaches it');
  });

  test("uses the undici package's own fetch, not the runtime's global fetch", async () => {
    const original = globalThis.fetch;
    let globalCalls = 0;
    globalThis.fetch = (() => {
      globalCalls += 1;
      return Promise.reject(new Error('the global fetch was used'));
    }) as typeof fetch;
    try {
      const response = await sendOutbound({ method: 'GET', url: `${server.url}/own-fetch`, timeoutMs: 5_000, maxBodyBytes: 100, agent: anyAddressAgent });
      assert.equal(response.status, 200);
      assert.equal(response.text, 'ok');
    } finally {
      globalThis.fetch = original;
    }
    assert.equal(globalCalls, 0);
  });
});

/** The operator's hosts in the tests below: nothing is ever sent to them. */
const OPERATOR = {
  SLACK_WEBHOOK_URL: 'https://hooks.slack.test/services/T000/B000/webhook-secret',
  LEGACY_DCL_BASE_URL: 'http://dcl.internal.test:8080/api',
};

/** POSTs the task; returns the 422's only issue, after checking that nothing was stored. */
async function refusedIssue(app: TestApp, body: Record<string, unknown>) {
  const user = await registerAndLogin(app, 'callback-refused');
  const response = await app.post('/api/v1/tasks', body, { token: user.token });
  assert.equal(response.status, 422, JSON.stringify(response.body));
  assert.equal(response.body.detail.length, 1, JSON.stringify(response.body));
  assert.equal((await tenantTasks(app, user.tenantId)).length, 0, 'nothing was stored');
  return response.body.detail[0];
}

/** The body with its callback_url at the top, and the same inside a chained task. */
function placements(url: string) {
  const payload = slackPayload('#general');
  return [
    { body: { payload, callback_url: url }, loc: ['body', 'callback_url'] },
    { body: { payload, on_success_next_task: { payload, on_success_next_task: { payload, callback_url: url } } }, loc: ['body', 'on_success_next_task', 'on_success_next_task', 'callback_url'] },
  ];
}

describe('callback targets refused at creation', () => {
  let app: TestApp;
  let allowingPrivate: TestApp;

  before(async () => {
    app = await startTestApp({ env: OPERATOR });
    allowingPrivate = await startTestApp({ env: { ...OPERATOR, CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true' } });
    assert.equal(app.config.callbackAllowPrivateNetworks, false);
  });

  after(async () => {
    await app?.close();
    await allowingPrivate?.close();
  });

  for (const [host, range] of [
    ['[2002:a00:1::1]', '6to4'],
    ['[2001::a00:1]', 'Teredo'],
    ['[64:ff9b:1::a00:1]', 'local-use NAT64'],
    ['[fec0::1]', 'site-local'],
    ['192.88.99.1', '6to4 relay anycast'],
  ] as const) {
    test(`a callback to ${host} (${range}, an IP literal) is 422, at the top and in a chained task`, async () => {
      for (const { body, loc } of placements(`http://${host}/hook`)) {
        const issue = await refusedIssue(app, body);
        assert.deepEqual(issue.loc, loc);
        assert.equal(issue.type, 'public_address');
        assert.match(issue.msg, /must reach a public address/);
        assert.match(issue.msg, /CALLBACK_ALLOW_PRIVATE_NETWORKS/);
      }
    });
  }

  test('a callback to a public IP literal is accepted', async () => {
    const user = await registerAndLogin(app, 'callback-public');
    await createTask(app, user.token, { payload: slackPayload('#general'), callback_url: 'https://[2606:4700:4700::1111]/hook', delay_seconds: 3600 });
    await createTask(app, user.token, { payload: slackPayload('#general'), callback_url: 'https://8.8.8.8/hook', delay_seconds: 3600 });
  });

  for (const [label, url] of [
    ["Slack's host, another path", 'https://hooks.slack.test/services/T999/B999/other'],
    ["Slack's host, other case and port", 'HTTPS://Hooks.SLACK.test:8443/x'],
    ["Slack's host with a trailing dot", 'https://hooks.slack.test./x'],
    ["the DCL's host, without its port", 'http://dcl.internal.test/state'],
    ["the DCL's host, another port", 'https://DCL.internal.test:9999/admin'],
  ] as const) {
    test(`a callback to ${label} is 422, at the top and in a chained task, even with CALLBACK_ALLOW_PRIVATE_NETWORKS=true`, async () => {
      for (const target of [app, allowingPrivate]) {
        for (const { body, loc } of placements(url)) {
          const issue = await refusedIssue(target, body);
          assert.deepEqual(issue.loc, loc);
          assert.equal(issue.type, 'operator_host');
          assert.equal(issue.msg, 'callback_url is refused: the target is a host this service itself calls (Slack or the Legacy DCL)');
        }
      }
    });
  }

  test('other hosts, even sharing a suffix with the operator’s, are accepted', async () => {
    const user = await registerAndLogin(allowingPrivate, 'callback-other-host');
    for (const url of ['https://receiver.example.test/hook', 'https://evil.hooks.slack.test/x', 'https://hooks.slack.test.example.com/x']) {
      await createTask(allowingPrivate, user.token, { payload: slackPayload('#general'), callback_url: url, delay_seconds: 3600 });
    }
  });
});

describe('callback targets refused when sent', () => {
  let slack: FakeSlack;
  let receiver: FakeServer;
  let app: TestApp;

  before(async () => {
    slack = await startFakeSlack();
    receiver = await startFakeServer();
    // No worker: the tasks are created under this configuration, and run under another.
    app = await startTestApp({ env: { SLACK_WEBHOOK_URL: underLocalhostName(slack.url), CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true' } });
  });

  after(async () => {
    await app?.close();
    await receiver?.close();
    await slack?.close();
  });

  test('a callback stored before Slack or the DCL moved to its host is refused, audited and never sent, even with CALLBACK_ALLOW_PRIVATE_NETWORKS=true', async () => {
    const user = await registerAndLogin(app, 'callback-moved');
    const port = new URL(receiver.url).port;
    const onSlackHost = `${receiver.url}/now-slack`;
    const onDclHost = `http://[::1]:${port}/now-dcl`;
    const tasks = [
      await createTask(app, user.token, { payload: slackPayload(newChannel('moved-slack')), callback_url: onSlackHost }),
      await createTask(app, user.token, { payload: slackPayload(newChannel('moved-dcl')), callback_url: onDclHost }),
    ];

    // The operator has since put Slack on 127.0.0.1 (where the receiver is) and the DCL on [::1].
    const moved = testConfig(app.database.url, {
      SLACK_WEBHOOK_URL: slack.url,
      LEGACY_DCL_BASE_URL: `http://[::1]:${port}`,
      CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
    });
    const worker = await startWorker({ db: app.db, boss: app.boss, config: moved, logger: silentLogger, watch: app.watch, metrics: app.metrics, notifications: app.notifications });
    try {
      for (const [task, url] of [
        [tasks[0], onSlackHost],
        [tasks[1], onDclHost],
      ] as const) {
        const messages = await waitForLog(app, task.id, /^Callback to .* refused/);
        assert.equal(messages.at(-1), `Callback to ${url} refused: the target is a host this service itself calls (Slack or the Legacy DCL)`);
        assert.ok(messages.includes('Successfully posted to Slack with status 200'), 'the task itself ran');
      }
    } finally {
      await worker.stop(5_000);
    }
    assert.equal(receiver.requests.length, 0, 'the receiver got nothing');
  });
});
