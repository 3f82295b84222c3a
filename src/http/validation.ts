import type { Context } from 'hono';
import { validator } from 'hono/validator';
import * as v from 'valibot';
import { AppError, type ValidationIssue } from '../errors.js';
import { findUnstorableText } from '../lib/storable-text.js';
import { requestBodyDoc, withDoc } from './openapi.js';

const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;
const FORM_MEDIA_TYPES = ['application/x-www-form-urlencoded', 'multipart/form-data'];

function mediaType(c: Context): string {
  return (c.req.header('Content-Type') ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Turns valibot issues into FastAPI-style `{loc, msg, type}` entries under a location prefix. */
export function toValidationIssues(issues: readonly v.BaseIssue<unknown>[], location: string): ValidationIssue[] {
  return issues.map((issue) => ({
    loc: [location, ...(issue.path ?? []).map((item) => item.key as string | number)],
    msg: issue.message,
    type: issue.type,
  }));
}

/** Parses a value or throws the 422 AppError listing every failing field. */
export function parseOrThrow<S extends v.GenericSchema>(schema: S, value: unknown, location: string): v.InferOutput<S> {
  const parsed = v.safeParse(schema, value, { abortPipeEarly: true });
  if (!parsed.success) throw new AppError('validation', toValidationIssues(parsed.issues, location));
  return parsed.output;
}

/**
 * Refuses a body with a string value or key PostgreSQL could not store as sent (NUL, lone
 * surrogates), before any schema or handler sees it: checked once here rather than per field,
 * and before register spends an Argon2 hash on a request that cannot succeed. An offending key
 * is reported pydantic-style, with `[key]` after it.
 */
function refuseUnstorableText(body: unknown): void {
  const found = findUnstorableText(body);
  if (!found) return;
  const loc = ['body', ...found.path, ...(found.isKey ? ['[key]'] : [])];
  throw new AppError('validation', [{ loc, msg: found.reason, type: 'invalid_text' }]);
}

/** Validates a JSON body against a valibot schema; the schema also documents the request. */
export function jsonBody<S extends v.GenericSchema>(schema: S) {
  return withDoc(
    validator('json', (value, c): v.InferOutput<S> => {
      if (!JSON_MEDIA_TYPE.test(mediaType(c))) {
        throw new AppError('unsupported_media_type', 'Content-Type must be application/json');
      }
      refuseUnstorableText(value);
      return parseOrThrow(schema, value, 'body');
    }),
    {
      requestBody: requestBodyDoc('application/json', schema),
      responses: {
        415: { description: 'Content-Type is not JSON' },
        422: { description: 'Validation error: every failing field' },
      },
    },
  );
}

/** Validates a url-encoded or multipart form body against a valibot schema. */
export function formBody<S extends v.GenericSchema>(schema: S) {
  return withDoc(
    validator('form', (value, c): v.InferOutput<S> => {
      if (!FORM_MEDIA_TYPES.includes(mediaType(c))) {
        throw new AppError(
          'unsupported_media_type',
          'Content-Type must be application/x-www-form-urlencoded or multipart/form-data',
        );
      }
      refuseUnstorableText(value);
      return parseOrThrow(schema, value, 'body');
    }),
    {
      requestBody: requestBodyDoc('application/x-www-form-urlencoded', schema),
      responses: {
        415: { description: 'Content-Type is not a form' },
        422: { description: 'Validation error: every failing field' },
      },
    },
  );
}
