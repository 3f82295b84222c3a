import { createHash, randomBytes } from 'node:crypto';

/**
 * Invitation tokens and API keys carry this much randomness: far past guessing, so a fast hash
 * (sha256) is enough to store them by, unlike passwords.
 */
const SECRET_BYTES = 32;
/** Its length in base64url, unpadded. */
const SECRET_CHARS = Math.ceil((SECRET_BYTES * 4) / 3);

/** What a secret is stored and looked up by; the secret itself is shown once and never stored. */
export function secretHash(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** A new secret (`prefix` + 43 base64url characters) and its hash. */
export function newSecret(prefix: string): { secret: string; hash: string } {
  const secret = `${prefix}${randomBytes(SECRET_BYTES).toString('base64url')}`;
  return { secret, hash: secretHash(secret) };
}

/** Whether `value` has the shape of a secret `newSecret(prefix)` makes: anything else is no secret of ours, and costs no lookup. */
export function isSecretOfShape(prefix: string, value: string): boolean {
  return value.length === prefix.length + SECRET_CHARS && value.startsWith(prefix) && /^[A-Za-z0-9_-]+$/.test(value.slice(prefix.length));
}
