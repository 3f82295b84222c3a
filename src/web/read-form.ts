import type { Context } from 'hono';
import { AppError } from '../errors.js';
import { findUnstorableText } from '../lib/storable-text.js';

/**
 * The submitted form, as Hono parses it (read once: later calls get the same). A body that is not
 * a form of the type it claims is a 400, and text PostgreSQL could not store (NUL, lone
 * surrogates) a 422, as the API answers them: before any field reaches a service.
 */
export async function readForm(c: Context): Promise<Awaited<ReturnType<Context['req']['parseBody']>>> {
  let body;
  try {
    body = await c.req.parseBody();
  } catch (error) {
    throw new AppError('bad_request', 'The form could not be read', { cause: error });
  }
  const unstorable = findUnstorableText(body);
  if (unstorable) throw new AppError('validation', unstorable.reason);
  return body;
}
