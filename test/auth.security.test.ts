import assert from 'node:assert/strict';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { base64url, decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from '../src/auth/tokens.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { registerAndLogin, type RegisteredUser } from './helpers/users.js';

// Two tenants: the auth-related cases of the reference's tests/test_isolation.py, and the token
// attacks issue 2 lists. Every forged token must be a 401 with `WWW-Authenticate: Bearer`.

const ME_ROUTES = ['/users/me', '/api/v1/auth/me'] as const;

let app: TestApp;
let alice: RegisteredUser;
let bob: RegisteredUser;
let key: Uint8Array;

before(async () => {
  app = await startTestApp();
  key = new TextEncoder().encode(app.config.jwtSecret);
  [alice, bob] = await Promise.all([registerAndLogin(app, 'tenant-a'), registerAndLogin(app, 'tenant-b')]);
});

after(async () => {
  await app.close();
});

/** A token signed the way the service signs its own, with whatever claims and key the test picks. */
function sign(claims: Record<string, unknown>, options: { key?: Uint8Array; alg?: string; iat?: number; exp?: number } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, ...claims })
    .setProtectedHeader({ alg: options.alg ?? 'HS256', typ: 'JWT' })
    .setIssuedAt(options.iat ?? now)
    .setExpirationTime(options.exp ?? now + 30 * 60)
    .sign(options.key ?? key);
}

function claimsOf(user: RegisteredUser) {
  return { sub: user.email, user_id: user.userId, tenant_id: user.tenantId, ver: 0 };
}

async function assertRefused(token: string, label: string) {
  for (const path of ME_ROUTES) {
    const response = await app.get(path, { token });
    assert.equal(response.status, 401, `${label} on ${path}: ${JSON.stringify(response.body)}`);
    assert.equal(response.headers.get('www-authenticate'), 'Bearer', `${label} on ${path}`);
    assert.equal(typeof response.body.detail, 'string', `${label} on ${path}`);
    assert.doesNotMatch(JSON.stringify(response.body), new RegExp(`${alice.email}|${bob.email}|${alice.tenantId}|${bob.tenantId}`));
  }
}

describe('reference test_isolation.py (auth cases)', () => {
  test('each user sees only their own profile via /me', async () => {
    for (const path of ME_ROUTES) {
      const a = await app.get(path, { token: alice.token });
      const b = await app.get(path, { token: bob.token });
      assert.equal(a.status, 200);
      assert.equal(b.status, 200);
      assert.equal(a.body.id, alice.userId);
      assert.equal(a.body.email, alice.email);
      assert.deepEqual(a.body.tenant, { id: alice.tenantId, name: alice.tenantName });
      assert.equal(b.body.id, bob.userId);
      assert.equal(b.body.email, bob.email);
      assert.deepEqual(b.body.tenant, { id: bob.tenantId, name: bob.tenantName });
      assert.notEqual(alice.tenantId, bob.tenantId);
      assert.doesNotMatch(JSON.stringify(a.body), new RegExp(`${bob.email}|${bob.tenantId}|${bob.userId}`));
      assert.doesNotMatch(JSON.stringify(b.body), new RegExp(`${alice.email}|${alice.tenantId}|${alice.userId}`));
    }
  });

  test('the JWT carries the right tenant and user and expires after 30 minutes', () => {
    for (const user of [alice, bob]) {
      const header = decodeProtectedHeader(user.token);
      assert.equal(header.alg, 'HS256');
      const claims = decodeJwt(user.token);
      assert.equal(claims.tenant_id, user.tenantId);
      assert.equal(claims.user_id, user.userId);
      assert.equal(claims.sub, user.email);
      assert.equal(typeof claims.iat, 'number');
      assert.equal(typeof claims.exp, 'number');
      assert.equal(claims.exp! - claims.iat!, 30 * 60);
      assert.ok(Math.abs(claims.iat! - Date.now() / 1000) < 60, 'iat is now');
    }
    assert.notEqual(decodeJwt(alice.token).tenant_id, decodeJwt(bob.token).tenant_id);
  });

  test('a token the test signs like the service does is accepted (the forgeries below are refused for their flaw alone)', async () => {
    const token = await sign(claimsOf(alice));
    const response = await app.get('/api/v1/auth/me', { token });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.id, alice.userId);
  });
});

describe('JWT attacks', () => {
  test('alg "none" is refused', async () => {
    const unsecured = new UnsecuredJWT(claimsOf(alice)).setIssuedAt().setExpirationTime('30m').encode();
    assert.equal(decodeProtectedHeader(unsecured).alg, 'none');
    await assertRefused(unsecured, 'alg none');
    // Hand-made variants: other spellings of none, and a none token that keeps a signature.
    const [, payload, signature] = alice.token.split('.');
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      const header = base64url.encode(JSON.stringify({ alg, typ: 'JWT' }));
      await assertRefused(`${header}.${payload}.`, `alg ${alg} without signature`);
      await assertRefused(`${header}.${payload}.${signature}`, `alg ${alg} with signature`);
    }
  });

  test('a token signed with another key is refused', async () => {
    await assertRefused(await sign(claimsOf(alice), { key: randomBytes(32) }), 'foreign key');
    // A plausible guess at a weak key is no better.
    await assertRefused(await sign(claimsOf(alice), { key: new TextEncoder().encode('secret') }), 'weak key');
  });

  test('an expired token is refused', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await sign(claimsOf(alice), { iat: now - 3600, exp: now - 60 });
    await assertRefused(expired, 'expired');
  });

  test('tampered claims are refused (signature kept)', async () => {
    const [header, , signature] = alice.token.split('.');
    const claims = decodeJwt(alice.token);
    const variants: Record<string, unknown>[] = [
      { ...claims, tenant_id: bob.tenantId },
      { ...claims, user_id: bob.userId, tenant_id: bob.tenantId, sub: bob.email },
      { ...claims, exp: (claims.exp ?? 0) + 3600 },
    ];
    for (const tampered of variants) {
      const token = `${header}.${base64url.encode(JSON.stringify(tampered))}.${signature}`;
      await assertRefused(token, `tampered ${JSON.stringify(tampered)}`);
    }
  });

  test('HS512 with the right key is refused: the algorithm is pinned to HS256', async () => {
    await assertRefused(await sign(claimsOf(alice), { alg: 'HS512' }), 'HS512');
    await assertRefused(await sign(claimsOf(alice), { alg: 'HS384' }), 'HS384');
  });

  test('an asymmetric token is refused', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const token = await new SignJWT(claimsOf(alice)).setProtectedHeader({ alg: 'RS256' }).setIssuedAt().setExpirationTime('30m').sign(privateKey);
    await assertRefused(token, 'RS256');
  });

  test('garbage tokens are refused', async () => {
    const garbage = [
      'garbage',
      'a.b.c',
      'eyJhbGciOiJIUzI1NiJ9.not-base64!.sig',
      `${base64url.encode('{"alg":"HS256"}')}.${base64url.encode('not json')}.x`,
      alice.token.slice(0, -4),
      `${alice.token}x`,
      alice.token.split('.').slice(0, 2).join('.'),
    ];
    for (const token of garbage) await assertRefused(token, `garbage ${token.slice(0, 20)}`);
  });

  test('a signed token whose tenant_id is not the user\'s tenant is refused', async () => {
    // The right key and a real user, but the tenant claim names another tenant.
    await assertRefused(await sign({ sub: alice.email, user_id: alice.userId, tenant_id: bob.tenantId }), 'user of A in tenant B');
    // A tenant that does not exist at all, and a user that does not exist.
    await assertRefused(await sign({ sub: alice.email, user_id: alice.userId, tenant_id: randomUUID() }), 'unknown tenant');
    await assertRefused(await sign({ sub: alice.email, user_id: randomUUID(), tenant_id: alice.tenantId }), 'unknown user');
  });

  test('signed tokens with missing or malformed claims are refused, never a 500', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = claimsOf(alice);
    await assertRefused(await sign({ sub: claims.sub, tenant_id: claims.tenant_id }), 'no user_id');
    await assertRefused(await sign({ sub: claims.sub, user_id: claims.user_id }), 'no tenant_id');
    await assertRefused(await sign({ ...claims, tenant_id: 'not-a-uuid' }), 'tenant_id not a uuid');
    await assertRefused(await sign({ ...claims, user_id: "1' or '1'='1" }), 'user_id injection');
    await assertRefused(await sign({ ...claims, user_id: 42 }), 'numeric user_id');
    await assertRefused(await sign({ ...claims, ver: undefined }), 'no token version');
    await assertRefused(await sign({ ...claims, ver: '0' }), 'token version not a number');
    await assertRefused(await sign({ ...claims, ver: 1 }), 'a token version the user has not reached');
    // A user id of another tenant, with this tenant's id: the user exists, but not there.
    await assertRefused(await sign({ ...claims, user_id: bob.userId }), "another tenant's user");
    // Signed with the service's own key, but issued by or for something else (or not saying).
    await assertRefused(await sign({ ...claims, iss: 'someone-else' }), 'another issuer');
    await assertRefused(await sign({ ...claims, aud: 'another-service' }), 'another audience');
    await assertRefused(await sign({ ...claims, iss: undefined }), 'no issuer');
    await assertRefused(await sign({ ...claims, aud: undefined }), 'no audience');
    // No exp at all: a token that never expires is not one the service issues.
    const noExp = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now).sign(key);
    await assertRefused(noExp, 'no exp');
    // A hand-rolled HS256 signature over a payload the service would accept proves the helper is honest.
    const header = base64url.encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
    const payload = base64url.encode(JSON.stringify({ ...claims, iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, iat: now, exp: now + 600 }));
    const mac = createHmac('sha256', Buffer.from(key)).update(`${header}.${payload}`).digest('base64url');
    const accepted = await app.get('/users/me', { token: `${header}.${payload}.${mac}` });
    assert.equal(accepted.status, 200);
  });
});
