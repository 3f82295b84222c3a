import type { Context } from 'hono';
import type { AppError } from '../errors.js';

/** The one place an AppError becomes a response: its status, `{"detail": ...}` and headers. */
export function errorResponse(c: Context, error: AppError) {
  return c.json({ detail: error.detail, ...error.extra }, error.status, error.headers);
}
