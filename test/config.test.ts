import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig, MIN_SECRET_LENGTH } from '../src/config.js';
import { createLogger } from '../src/logger.js';

// Unit tests: no database, no server. loadConfig takes the environment as an argument.

const STRONG = 's'.repeat(40);
const OTHER_STRONG = 'j'.repeat(48);
const KEY_HEX = 'ab'.repeat(32);
const KEY_BASE64 = Buffer.alloc(32, 0xcd).toString('base64');

function configError(env: NodeJS.ProcessEnv, options?: Parameters<typeof loadConfig>[1]): ConfigError {
  try {
    loadConfig(env, options);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail(`loadConfig(${JSON.stringify(env)}) did not throw`);
}

describe('secrets', () => {
  test('production without SECRET_KEY stops with a message naming SECRET_KEY', () => {
    const error = configError({ NODE_ENV: 'production' });
    assert.match(error.message, /SECRET_KEY/);
    assert.equal(error.name, 'ConfigError');
    // The development fallback is never used outside development.
    const withFallback = configError({ NODE_ENV: 'production' }, { developmentSecret: () => STRONG });
    assert.match(withFallback.message, /SECRET_KEY/);
    const inTests = configError({ NODE_ENV: 'test' }, { developmentSecret: () => STRONG });
    assert.match(inTests.message, /SECRET_KEY/);
  });

  test('a secret shorter than 32 characters stops start-up naming the variable', () => {
    const weak = 'w'.repeat(MIN_SECRET_LENGTH - 1);
    assert.equal(weak.length, 31);
    const secretKey = configError({ NODE_ENV: 'production', SECRET_KEY: weak });
    assert.match(secretKey.message, /\bSECRET_KEY\b/);
    assert.doesNotMatch(secretKey.message, /JWT_SECRET_KEY/);

    const jwtKey = configError({ NODE_ENV: 'production', SECRET_KEY: STRONG, JWT_SECRET_KEY: weak });
    assert.match(jwtKey.message, /JWT_SECRET_KEY/);
    // The message never repeats the secret itself.
    for (const error of [secretKey, jwtKey]) assert.ok(!error.message.includes(weak));

    assert.equal(loadConfig({ NODE_ENV: 'production', SECRET_KEY: 'x'.repeat(MIN_SECRET_LENGTH) }).jwtSecret.length, 32);
  });

  test('JWT_SECRET_KEY is used when set and falls back to SECRET_KEY', () => {
    assert.equal(loadConfig({ NODE_ENV: 'production', SECRET_KEY: STRONG }).jwtSecret, STRONG);
    assert.equal(loadConfig({ NODE_ENV: 'production', JWT_SECRET_KEY: OTHER_STRONG }).jwtSecret, OTHER_STRONG);
    assert.equal(loadConfig({ NODE_ENV: 'production', SECRET_KEY: STRONG, JWT_SECRET_KEY: OTHER_STRONG }).jwtSecret, OTHER_STRONG);
    // An empty JWT_SECRET_KEY (as an .env file leaves it) counts as unset.
    assert.equal(loadConfig({ NODE_ENV: 'production', SECRET_KEY: STRONG, JWT_SECRET_KEY: '' }).jwtSecret, STRONG);
  });

  test('development refuses a short secret that was set too, and never replaces it', () => {
    for (const variable of ['SECRET_KEY', 'JWT_SECRET_KEY']) {
      const error = configError({ NODE_ENV: 'development', [variable]: 'changeme' }, { developmentSecret: () => assert.fail('not called') });
      assert.match(error.message, new RegExp(`^${variable} is too weak`));
    }
  });

  test('development uses the developmentSecret option when no secret is set', () => {
    let calls = 0;
    const generated = 'd'.repeat(64);
    const config = loadConfig({ NODE_ENV: 'development' }, { developmentSecret: () => (calls++, generated) });
    assert.equal(config.env, 'development');
    assert.equal(config.jwtSecret, generated);
    assert.equal(calls, 1);
    // NODE_ENV defaults to development.
    assert.equal(loadConfig({}, { developmentSecret: () => generated }).jwtSecret, generated);
    // A configured secret wins, and the fallback is not even asked.
    const configured = loadConfig({ NODE_ENV: 'development', SECRET_KEY: STRONG }, { developmentSecret: () => assert.fail('not called') });
    assert.equal(configured.jwtSecret, STRONG);
    // Without the option, development still refuses to run with no secret at all.
    assert.match(configError({ NODE_ENV: 'development' }).message, /SECRET_KEY/);
  });
});

describe('values', () => {
  test('defaults', () => {
    const config = loadConfig({ NODE_ENV: 'production', SECRET_KEY: STRONG });
    assert.equal(config.port, 5000);
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.jwtExpireMinutes, 30);
    assert.deepEqual(config.retryDelaysSeconds, [10, 30, 60]);
    assert.equal(config.callbackTimeoutSeconds, 10);
    assert.equal(config.databaseStartupTimeoutSeconds, 60);
    assert.equal(config.slackTimeoutSeconds, 30);
    assert.equal(config.legacyDclTimeoutSeconds, 10);
    assert.equal(config.faultInjectionPoint, undefined);
    assert.equal(config.callbackAllowPrivateNetworks, false);
    assert.equal(config.maxBodyBytes, 1_048_576);
    assert.deepEqual(config.allowedWebOrigins, []);
    assert.equal(config.slackWebhookUrl, undefined);
    assert.equal(config.legacyDclBaseUrl, undefined);
    assert.equal(config.databaseUrl, '');
    assert.equal(config.loginFailureLimit, 10);
    assert.equal(config.registrationLimitPerHour, 20);
    assert.equal(config.tenantRateLimitPerSecond, 100);
    assert.equal(config.tenantMaxQueuedTasks, 100_000);
    assert.equal(config.maxTaskPayloadBytes, 65_536);
    assert.equal(config.taskRetentionDays, 30);
    assert.equal(config.trustedProxies, 0);
    assert.equal(config.metricsToken, undefined);
    assert.equal(config.workerHttpPort, undefined);
    assert.equal(config.slackSharedWebhook, true);
    assert.equal(config.callbackMaxRetries, 0);
    assert.deepEqual(config.callbackRetryDelaysSeconds, [5, 300, 1800, 7200, 18000, 36000]);
    assert.equal(config.encryptionSecret, undefined);
    assert.equal(config.previousEncryptionSecret, undefined);
    assert.ok(Object.isFrozen(config));
  });

  test('every variable is read', () => {
    const config = loadConfig({
      NODE_ENV: 'production',
      SECRET_KEY: STRONG,
      HOST: '127.0.0.1',
      PORT: '8080',
      DATABASE_URL: 'postgres://u@db:5432/app',
      JWT_EXPIRE_MINUTES: '15',
      SLACK_WEBHOOK_URL: 'https://hooks.slack.com/services/T/B/X',
      LEGACY_DCL_BASE_URL: 'https://dcl.example.com/',
      RETRY_DELAYS_SECONDS: ' 1, 2 ,3 ',
      CALLBACK_TIMEOUT_SECONDS: '5',
      DATABASE_STARTUP_TIMEOUT_SECONDS: '7',
      SLACK_TIMEOUT_SECONDS: '8',
      LEGACY_DCL_TIMEOUT_SECONDS: '9',
      CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
      MAX_BODY_BYTES: '2048',
      LOGIN_FAILURE_LIMIT: '5',
      REGISTRATION_LIMIT_PER_HOUR: '0',
      TENANT_RATE_LIMIT_PER_SECOND: '50',
      TENANT_MAX_QUEUED_TASKS: '1000',
      MAX_TASK_PAYLOAD_BYTES: '1024',
      TASK_RETENTION_DAYS: '7',
      TRUST_PROXY: '2',
      METRICS_TOKEN: 'm'.repeat(20),
      WORKER_HTTP_PORT: '9100',
      SLACK_SHARED_WEBHOOK: 'false',
      CALLBACK_MAX_RETRIES: '3',
      CALLBACK_RETRY_DELAYS_SECONDS: '1, 60',
      ENCRYPTION_KEY: KEY_HEX,
      ENCRYPTION_KEY_PREVIOUS: KEY_BASE64,
    });
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 8080);
    assert.equal(config.databaseUrl, 'postgres://u@db:5432/app');
    assert.equal(config.jwtExpireMinutes, 15);
    assert.equal(config.slackWebhookUrl, 'https://hooks.slack.com/services/T/B/X');
    assert.equal(config.legacyDclBaseUrl, 'https://dcl.example.com');
    assert.deepEqual(config.retryDelaysSeconds, [1, 2, 3]);
    assert.equal(config.callbackTimeoutSeconds, 5);
    assert.equal(config.databaseStartupTimeoutSeconds, 7);
    assert.equal(config.slackTimeoutSeconds, 8);
    assert.equal(config.legacyDclTimeoutSeconds, 9);
    assert.equal(config.callbackAllowPrivateNetworks, true);
    assert.equal(config.maxBodyBytes, 2048);
    assert.equal(config.loginFailureLimit, 5);
    assert.equal(config.registrationLimitPerHour, 0);
    assert.equal(config.tenantRateLimitPerSecond, 50);
    assert.equal(config.tenantMaxQueuedTasks, 1000);
    assert.equal(config.maxTaskPayloadBytes, 1024);
    assert.equal(config.taskRetentionDays, 7);
    assert.equal(config.trustedProxies, 2);
    assert.equal(config.metricsToken, 'm'.repeat(20));
    assert.equal(config.workerHttpPort, 9100);
    assert.equal(config.slackSharedWebhook, false);
    assert.equal(config.callbackMaxRetries, 3);
    assert.deepEqual(config.callbackRetryDelaysSeconds, [1, 60]);
    assert.deepEqual(config.encryptionSecret, Buffer.alloc(32, 0xab));
    assert.deepEqual(config.previousEncryptionSecret, Buffer.alloc(32, 0xcd));
  });

  test('ENCRYPTION_KEY is 32 bytes in hex or base64 (either alphabet, padding optional), and ENCRYPTION_KEY_PREVIOUS needs it', () => {
    const key = Buffer.alloc(32, 0xfb);
    for (const text of [key.toString('hex'), key.toString('hex').toUpperCase(), key.toString('base64'), key.toString('base64url'), ` ${key.toString('base64')} `]) {
      assert.deepEqual(loadConfig({ NODE_ENV: 'production', SECRET_KEY: STRONG, ENCRYPTION_KEY: text }).encryptionSecret, key, text);
    }
    const wrong = ['too-short', Buffer.alloc(16).toString('hex'), Buffer.alloc(31).toString('base64'), Buffer.alloc(33).toString('base64'), 'z'.repeat(64)];
    for (const variable of ['ENCRYPTION_KEY', 'ENCRYPTION_KEY_PREVIOUS']) {
      for (const text of wrong) {
        const error = configError({ NODE_ENV: 'production', SECRET_KEY: STRONG, ENCRYPTION_KEY: KEY_HEX, [variable]: text });
        assert.match(error.message, new RegExp(`\\b${variable}\\b`), `${variable}=${text}: ${error.message}`);
        assert.ok(!error.message.includes(text), 'the message never repeats the value');
      }
    }
    const orphan = configError({ NODE_ENV: 'production', SECRET_KEY: STRONG, ENCRYPTION_KEY_PREVIOUS: KEY_HEX });
    assert.match(orphan.message, /ENCRYPTION_KEY_PREVIOUS is set without ENCRYPTION_KEY/);
  });

  test('TASK_RETENTION_DAYS=0 keeps finished tasks forever', () => {
    assert.equal(loadConfig({ NODE_ENV: 'production', SECRET_KEY: STRONG, TASK_RETENTION_DAYS: '0' }).taskRetentionDays, 0);
  });

  test('TRUST_PROXY is false, true (one proxy) or a count', () => {
    for (const [value, expected] of [
      ['false', 0],
      ['true', 1],
      ['TRUE', 1],
      ['0', 0],
      ['3', 3],
    ] as const) {
      assert.equal(loadConfig({ NODE_ENV: 'production', SECRET_KEY: STRONG, TRUST_PROXY: value }).trustedProxies, expected, value);
    }
  });

  test('ALLOWED_WEB_ORIGIN is a comma-separated list', () => {
    const config = loadConfig({
      NODE_ENV: 'production',
      SECRET_KEY: STRONG,
      ALLOWED_WEB_ORIGIN: 'https://a.example.com, https://b.example.com/ ,,http://localhost:3000',
    });
    assert.deepEqual([...config.allowedWebOrigins], ['https://a.example.com', 'https://b.example.com', 'http://localhost:3000']);
    assert.deepEqual(loadConfig({ NODE_ENV: 'production', SECRET_KEY: STRONG, ALLOWED_WEB_ORIGIN: 'https://one.example.com' }).allowedWebOrigins, [
      'https://one.example.com',
    ]);
    assert.deepEqual(loadConfig({ NODE_ENV: 'production', SECRET_KEY: STRONG, ALLOWED_WEB_ORIGIN: ' ' }).allowedWebOrigins, []);
  });

  test('an invalid PORT is refused naming PORT', () => {
    for (const port of ['abc', '0', '65536', '-1', '80.5', '']) {
      const error = configError({ NODE_ENV: 'production', SECRET_KEY: STRONG, PORT: port });
      assert.match(error.message, /\bPORT\b/, `PORT=${JSON.stringify(port)}: ${error.message}`);
    }
  });

  test('other invalid values are refused naming their variable', () => {
    const cases: [string, string][] = [
      ['JWT_EXPIRE_MINUTES', '0'],
      ['JWT_EXPIRE_MINUTES', '1441'],
      ['JWT_EXPIRE_MINUTES', 'thirty'],
      ['RETRY_DELAYS_SECONDS', '10,,30'],
      ['RETRY_DELAYS_SECONDS', '10s'],
      ['CALLBACK_TIMEOUT_SECONDS', '-5'],
      ['DATABASE_STARTUP_TIMEOUT_SECONDS', '0'],
      ['SLACK_TIMEOUT_SECONDS', '301'],
      ['LEGACY_DCL_TIMEOUT_SECONDS', '1.5'],
      ['FAULT_INJECTION_POINT', 'everywhere'],
      ['CALLBACK_ALLOW_PRIVATE_NETWORKS', 'maybe'],
      ['MAX_BODY_BYTES', '1mb'],
      ['LOGIN_FAILURE_LIMIT', '-1'],
      ['REGISTRATION_LIMIT_PER_HOUR', 'many'],
      ['TENANT_RATE_LIMIT_PER_SECOND', '1.5'],
      ['TENANT_MAX_QUEUED_TASKS', ''],
      ['MAX_TASK_PAYLOAD_BYTES', '64k'],
      ['TASK_RETENTION_DAYS', '-1'],
      ['TASK_RETENTION_DAYS', '30d'],
      ['TASK_RETENTION_DAYS', '36501'],
      ['TRUST_PROXY', 'yes please'],
      ['TRUST_PROXY', '10.0.0.1'],
      ['METRICS_TOKEN', 'short'],
      ['WORKER_HTTP_PORT', '70000'],
      ['WORKER_HTTP_PORT', 'nine'],
      ['SLACK_WEBHOOK_URL', 'not a url'],
      ['SLACK_SHARED_WEBHOOK', 'sometimes'],
      ['CALLBACK_MAX_RETRIES', '26'],
      ['CALLBACK_MAX_RETRIES', 'three'],
      ['CALLBACK_RETRY_DELAYS_SECONDS', '5m'],
      ['CALLBACK_RETRY_DELAYS_SECONDS', '5,86401'],
      ['NODE_ENV', 'staging'],
    ];
    for (const [variable, value] of cases) {
      const error = configError({ NODE_ENV: 'production', SECRET_KEY: STRONG, [variable]: value });
      assert.match(error.message, new RegExp(`\\b${variable}\\b`), `${variable}=${value}: ${error.message}`);
    }
  });

  test('FAULT_INJECTION_POINT names a point outside production, and is refused in production', () => {
    assert.equal(loadConfig({ NODE_ENV: 'test', SECRET_KEY: STRONG, FAULT_INJECTION_POINT: 'after-claim' }).faultInjectionPoint, 'after-claim');
    assert.match(configError({ NODE_ENV: 'production', SECRET_KEY: STRONG, FAULT_INJECTION_POINT: 'after-claim' }).message, /FAULT_INJECTION_POINT is for tests only/);
  });

  test('boolean flags accept the usual spellings', () => {
    for (const [value, expected] of [
      ['true', true],
      ['TRUE', true],
      ['1', true],
      ['yes', true],
      ['false', false],
      ['0', false],
      ['no', false],
    ] as const) {
      const config = loadConfig({ NODE_ENV: 'production', SECRET_KEY: STRONG, CALLBACK_ALLOW_PRIVATE_NETWORKS: value });
      assert.equal(config.callbackAllowPrivateNetworks, expected, value);
    }
  });
});

describe('logger', () => {
  function capture() {
    const lines: string[] = [];
    return { lines, logger: createLogger({ write: (line) => void lines.push(line) }) };
  }

  test('writes one JSON line per event with time, level, msg and fields', () => {
    const { lines, logger } = capture();
    logger.info('hello', { request_id: 'r1', count: 2 });
    logger.child({ tenant_id: 't1' }).warn('careful');
    assert.equal(lines.length, 2);
    for (const line of lines) assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'));
    const [first, second] = lines.map((line) => JSON.parse(line));
    assert.equal(first.level, 'info');
    assert.equal(first.msg, 'hello');
    assert.equal(first.request_id, 'r1');
    assert.equal(first.count, 2);
    assert.ok(!Number.isNaN(Date.parse(first.time)));
    assert.equal(second.level, 'warn');
    assert.equal(second.tenant_id, 't1');
  });

  test('redacts password, token, secret and authorization keys, however deep', () => {
    const { lines, logger } = capture();
    const secrets = {
      password: 'hunter2-password',
      hashed_password: '$argon2id$v=19$m=19456,t=2,p=1$abc',
      access_token: 'eyJhbGciOiJIUzI1NiJ9.payload.sig',
      token: 'raw-token-value',
      secret: 'top-secret-value',
      SECRET_KEY: 'env-secret-key-value',
      jwtSecret: 'jwt-secret-value',
      authorization: 'Bearer header-token-value',
      Authorization: 'Bearer other-header-value',
    };
    logger.info('event', { ...secrets, nested: { deeper: { ...secrets } }, list: [{ password: 'in-a-list-password' }], user: 'alice' });
    logger.child({ token: 'child-token-value' }).error('child event', { headers: { authorization: 'Bearer child-auth' } });
    const output = lines.join('');
    for (const value of [...Object.values(secrets), 'in-a-list-password', 'child-token-value', 'Bearer child-auth']) {
      assert.ok(!output.includes(value), `${value} leaked: ${output}`);
    }
    const record = JSON.parse(lines[0]!);
    assert.equal(record.password, '[redacted]');
    assert.equal(record.access_token, '[redacted]');
    assert.equal(record.nested.deeper.authorization, '[redacted]');
    assert.equal(record.user, 'alice', 'other fields are kept');
  });

  test('errors are logged by name and message, causes included', () => {
    const { lines, logger } = capture();
    logger.error('failed', { error: new Error('outer', { cause: new Error('inner cause') }) });
    const record = JSON.parse(lines[0]!);
    assert.equal(record.error.message, 'outer');
    assert.equal(record.error.cause.message, 'inner cause');
  });

  test('levels below the threshold are dropped', () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn', write: (line) => void lines.push(line) });
    logger.debug('no');
    logger.info('no');
    logger.warn('yes');
    logger.error('yes');
    assert.deepEqual(lines.map((line) => JSON.parse(line).msg), ['yes', 'yes']);
  });
});
