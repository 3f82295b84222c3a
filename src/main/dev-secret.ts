import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { MIN_SECRET_LENGTH } from '../config.js';
import type { Logger } from '../logger.js';

export const DEV_SECRET_FILE = '.data/secret_key';

/**
 * In development only: a random secret made once and kept in `.data`, so tokens survive restarts
 * without anyone choosing a secret. Never used in production, where a missing secret is fatal.
 */
export function persistentDevelopmentSecret(logger: Logger, file = DEV_SECRET_FILE): string {
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (existing.length >= MIN_SECRET_LENGTH) {
      logger.warn('SECRET_KEY is not set: using the development secret kept in ' + file);
      return existing;
    }
  } catch {
    // No secret yet: make one below.
  }
  const secret = randomBytes(48).toString('base64url');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  logger.warn(`SECRET_KEY is not set: generated a development secret and kept it in ${file}; set SECRET_KEY in production`);
  return secret;
}
