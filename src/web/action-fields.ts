import { ACTION_NAMES, actionFor } from '../actions/registry.js';

// The new-task form asks for each action's payload field by field. The fields are read from the
// action's own payload schema (the one that validates a created task), so an action added to the
// registry gets its form without the dashboard changing, and the form can never ask for a field
// the API would not accept.

export type FieldKind = 'text' | 'textarea' | 'number' | 'boolean' | 'choice' | 'json';

export interface ActionField {
  name: string;
  label: string;
  kind: FieldKind;
  required: boolean;
  /** The choices of a `choice` field. */
  options?: readonly string[];
  hint?: string;
  /** A text field that holds a URL. */
  url?: boolean;
  min?: number;
  max?: number;
  maxLength?: number;
}

export interface ActionForm {
  name: string;
  fields: ActionField[];
}

/** Strings that may be longer than this (or have no bound) get a multi-line box. */
const LONGEST_SINGLE_LINE = 2_048;
/** Words that read better in capitals in a label. */
const ACRONYMS: Record<string, string> = { url: 'URL', json: 'JSON', id: 'ID', http: 'HTTP' };

/** The parts of a valibot schema object this reads: its kind, its pipe, and what wrappers wrap. */
interface SchemaShape {
  type: string;
  pipe?: readonly { type: string; requirement?: unknown; title?: string; description?: string }[];
  wrapped?: SchemaShape;
  options?: readonly unknown[];
  entries?: Record<string, SchemaShape>;
}

/** `expect_status` → `Expect status`, `url` → `URL`. */
function humanize(name: string): string {
  const words = name.split('_').map((word) => ACRONYMS[word] ?? word);
  const first = words[0] ?? '';
  return [first.charAt(0).toUpperCase() + first.slice(1), ...words.slice(1)].join(' ');
}

function describeField(name: string, schema: SchemaShape): ActionField {
  let required = true;
  let inner = schema;
  while (inner.wrapped && ['optional', 'exact_optional', 'nullish', 'nullable', 'undefinedable'].includes(inner.type)) {
    if (inner.type !== 'nullable') required = false;
    inner = inner.wrapped;
  }
  const pipe = inner.pipe ?? [];
  const requirement = (type: string) => pipe.find((item) => item.type === type)?.requirement as number | undefined;
  const title = pipe.find((item) => item.type === 'title')?.title;
  const hint = pipe.find((item) => item.type === 'description')?.description;
  const field: ActionField = { name, label: title ?? humanize(name), kind: 'json', required, ...(hint ? { hint } : {}) };
  switch (inner.type) {
    case 'string': {
      const maxLength = requirement('max_length');
      const url = pipe.some((item) => item.type === 'url');
      const kind = url || (maxLength !== undefined && maxLength <= LONGEST_SINGLE_LINE) ? 'text' : 'textarea';
      return { ...field, kind, ...(url ? { url } : {}), ...(maxLength ? { maxLength } : {}) };
    }
    case 'number': {
      const min = requirement('min_value');
      const max = requirement('max_value');
      return { ...field, kind: 'number', ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}) };
    }
    case 'boolean':
      return { ...field, kind: 'boolean' };
    case 'picklist':
      return { ...field, kind: 'choice', options: (inner.options ?? []).map(String) };
    default:
      // Objects, lists, records and anything else: typed as JSON.
      return { ...field, hint: hint ?? 'JSON, e.g. {"key": "value"}' };
  }
}

/** The form of every action a task may run, in the registry's order. */
export function actionForms(): ActionForm[] {
  return ACTION_NAMES.map((name) => {
    const schema = actionFor('task', { action: name })!.payloadSchema as unknown as SchemaShape;
    const fields = Object.entries(schema.entries ?? {})
      .filter(([field]) => field !== 'action')
      .map(([field, fieldSchema]) => describeField(field, fieldSchema));
    return { name, fields };
  });
}

/**
 * The payload a form's strings describe, in the types the schema expects. What cannot be
 * converted is passed on as it is, so the schema's own message explains it; only JSON that does
 * not parse is reported here, under the field's name.
 */
export function payloadFrom(form: ActionForm, value: (field: string) => string | undefined): { payload: Record<string, unknown>; errors: Record<string, string> } {
  const payload: Record<string, unknown> = { action: form.name };
  const errors: Record<string, string> = {};
  for (const field of form.fields) {
    const given = value(field.name) ?? '';
    if (field.kind === 'boolean') {
      payload[field.name] = given === 'true';
      continue;
    }
    if (given.trim() === '' && !field.required) continue;
    if (field.kind === 'number') payload[field.name] = /^\s*-?\d+(\.\d+)?\s*$/.test(given) ? Number(given) : given === '' ? undefined : given;
    else if (field.kind === 'json') {
      try {
        payload[field.name] = JSON.parse(given);
      } catch {
        errors[field.name] = `${field.name} must be valid JSON`;
      }
    } else payload[field.name] = given;
  }
  return { payload, errors };
}
