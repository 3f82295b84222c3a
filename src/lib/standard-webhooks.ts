import { createHmac, randomBytes } from 'node:crypto';

// Standard Webhooks (https://www.standardwebhooks.com/): a receiver checks
//   webhook-signature = "v1," + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"))
// where the key is the base64 after "whsec_" in the tenant's secret. Several signatures are
// separated by spaces: during a rotation, one per secret still in use.

const SECRET_PREFIX = 'whsec_';
/** The spec asks for 24 to 64 bytes; 32 is what HMAC-SHA256 makes full use of. */
const SECRET_BYTES = 32;

export function newSigningSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(SECRET_BYTES).toString('base64')}`;
}

function sign(secret: string, signedContent: string): string {
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
  return `v1,${createHmac('sha256', key).update(signedContent, 'utf8').digest('base64')}`;
}

/**
 * The three Standard Webhooks headers for `body`, exactly the string sent; `timestamp` is in unix
 * seconds; `secrets` are `whsec_...`, each of which signs.
 */
export function webhookHeaders(message: { id: string; timestamp: number; body: string; secrets: readonly string[] }): Record<string, string> {
  const signedContent = `${message.id}.${message.timestamp}.${message.body}`;
  return {
    'webhook-id': message.id,
    'webhook-timestamp': String(message.timestamp),
    'webhook-signature': message.secrets.map((secret) => sign(secret, signedContent)).join(' '),
  };
}
