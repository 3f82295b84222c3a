import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { Config } from '../config.js';

// Secrets a tenant gives us (a Slack webhook URL) are stored as AES-256-GCM ciphertexts:
//   v1.<key id>.<iv>.<ciphertext>.<tag>     (the last three base64url)
// The key id tells which key made a ciphertext, so during a key rotation the previous key
// (ENCRYPTION_KEY_PREVIOUS) still decrypts the old ones until they are re-encrypted. Each
// ciphertext is bound to where it belongs (the "context": e.g. the tenant and field) as GCM's
// additional data: copied to another tenant's row in the database, it no longer decrypts.

const VERSION = 'v1';
const IV_BYTES = 12;
/** The full 16-byte GCM tag: a shorter one (which GCM would otherwise accept) is easier to forge. */
const TAG_BYTES = 16;

/** The key is not configured: nothing can be encrypted, or the ciphertext's key is not among those configured. */
export class EncryptionKeyUnavailableError extends Error {
  override name = 'EncryptionKeyUnavailableError';
}

/** The ciphertext is malformed, or was altered, or belongs to another context. */
export class DecryptionError extends Error {
  override name = 'DecryptionError';
}

/**
 * A short public name for a key, derived from it: which key made a ciphertext, without a
 * separate setting to keep in step. 32 bits of a hash of a 256-bit random key reveal nothing usable.
 */
function keyIdOf(key: Buffer): string {
  return createHash('sha256').update('autonomos encryption key id\0').update(key).digest('hex').slice(0, 8);
}

export interface SecretBox {
  /** Whether ENCRYPTION_KEY is configured, so that encrypt() can work. */
  readonly canEncrypt: boolean;
  encrypt(plaintext: string, context: string): string;
  decrypt(ciphertext: string, context: string): string;
  /** Whether the ciphertext was made with the current ENCRYPTION_KEY (else it needs re-encrypting). */
  isCurrent(ciphertext: string): boolean;
}

/** Encrypts with ENCRYPTION_KEY; decrypts with it or ENCRYPTION_KEY_PREVIOUS, whichever made the ciphertext. */
export function createSecretBox(config: Pick<Config, 'encryptionSecret' | 'previousEncryptionSecret'>): SecretBox {
  const current = config.encryptionSecret ? { id: keyIdOf(config.encryptionSecret), key: config.encryptionSecret } : undefined;
  const keys = new Map<string, Buffer>();
  if (config.previousEncryptionSecret) keys.set(keyIdOf(config.previousEncryptionSecret), config.previousEncryptionSecret);
  if (current) keys.set(current.id, current.key);

  return {
    canEncrypt: current !== undefined,

    encrypt(plaintext, context) {
      if (!current) throw new EncryptionKeyUnavailableError('ENCRYPTION_KEY is not configured');
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', current.key, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.from(context, 'utf8'));
      const encrypted = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return [VERSION, current.id, iv.toString('base64url'), encrypted.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
    },

    decrypt(ciphertext, context) {
      const [version, keyId, iv, encrypted, tag, ...rest] = ciphertext.split('.');
      if (version !== VERSION || !keyId || iv === undefined || encrypted === undefined || tag === undefined || rest.length > 0) {
        throw new DecryptionError('not a ciphertext this service made');
      }
      const key = keys.get(keyId);
      if (!key) {
        throw new EncryptionKeyUnavailableError(
          `it was encrypted with key ${keyId}, which is neither ENCRYPTION_KEY nor ENCRYPTION_KEY_PREVIOUS`,
        );
      }
      try {
        const ivBytes = Buffer.from(iv, 'base64url');
        if (ivBytes.length !== IV_BYTES) throw new Error(`the IV is ${ivBytes.length} bytes`);
        const decipher = createDecipheriv('aes-256-gcm', key, ivBytes, { authTagLength: TAG_BYTES });
        decipher.setAAD(Buffer.from(context, 'utf8'));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(encrypted, 'base64url')), decipher.final()]).toString('utf8');
      } catch (error) {
        throw new DecryptionError('the ciphertext does not verify (altered, or stored for another tenant)', { cause: error });
      }
    },

    isCurrent(ciphertext) {
      return current !== undefined && ciphertext.split('.')[1] === current.id;
    },
  };
}
