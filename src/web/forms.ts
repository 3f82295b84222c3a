import type { Context } from 'hono';
import * as v from 'valibot';
import type { ValidationIssue } from '../errors.js';
import { toValidationIssues } from '../http/validation.js';
import { CSRF_FIELD } from './csrf.js';
import { readForm } from './read-form.js';
import { DASHBOARD_PATH } from './session.js';

/** Error messages by field name, and those that belong to no field. */
export interface FormErrors {
  fields: Record<string, string>;
  general: string[];
}

export const noErrors = (): FormErrors => ({ fields: {}, general: [] });

/**
 * The submitted form as strings, the token left out. A field given twice keeps its last value;
 * a file upload (no dashboard form has one) is ignored.
 */
export async function formFields(c: Context): Promise<Record<string, string>> {
  const body = await readForm(c);
  const fields: Record<string, string> = {};
  for (const [name, value] of Object.entries(body)) {
    if (name === CSRF_FIELD) continue;
    const last = Array.isArray(value) ? value.at(-1) : value;
    if (typeof last === 'string') fields[name] = last;
  }
  return fields;
}

/**
 * Sorts the API's validation issues to the fields they are about: `fieldOf` names the field of an
 * issue's location (without its leading "body"), or undefined for a message of the whole form.
 * The first message per field is kept.
 */
export function errorsByField(issues: readonly ValidationIssue[], fieldOf: (loc: (string | number)[]) => string | undefined): FormErrors {
  const errors = noErrors();
  for (const issue of issues) {
    const loc = issue.loc[0] === 'body' ? issue.loc.slice(1) : issue.loc;
    const field = fieldOf(loc);
    if (field === undefined) errors.general.push(issue.msg);
    else errors.fields[field] ??= issue.msg;
  }
  return errors;
}

/** Parses with a request schema of the API; the issues as the API would report them otherwise. */
export function parseForm<S extends v.GenericSchema>(
  schema: S,
  value: unknown,
): { ok: true; value: v.InferOutput<S> } | { ok: false; issues: ValidationIssue[] } {
  const parsed = v.safeParse(schema, value, { abortPipeEarly: true });
  return parsed.success ? { ok: true, value: parsed.output } : { ok: false, issues: toValidationIssues(parsed.issues, 'body') };
}

/**
 * Where to go after signing in: a dashboard path the sign-in page was asked to return to, never
 * another site (`//evil.example`, `/\evil.example`) or the sign-in page itself.
 */
export function safeReturnPath(next: string | undefined, fallback: string): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.includes('\\')) return fallback;
  let url: URL;
  try {
    url = new URL(next, 'http://dashboard.invalid');
  } catch {
    return fallback;
  }
  if (url.origin !== 'http://dashboard.invalid') return fallback;
  if (url.pathname !== DASHBOARD_PATH && !url.pathname.startsWith(`${DASHBOARD_PATH}/`)) return fallback;
  if (url.pathname.startsWith(`${DASHBOARD_PATH}/login`) || url.pathname.startsWith(`${DASHBOARD_PATH}/assets/`)) return fallback;
  return `${url.pathname}${url.search}`;
}
