import type { FC } from 'hono/jsx';
import { FieldError } from './layout.js';

/** Props every labelled control takes. The id doubles as the anchor of its error message. */
interface FieldProps {
  id: string;
  name: string;
  label: string;
  value?: string | undefined;
  error?: string | undefined;
  hint?: string | undefined;
  required?: boolean;
}

/** aria-describedby for a field's hint and error, when it has them. */
function describedBy(id: string, hint: string | undefined, error: string | undefined): string | undefined {
  const ids = [hint ? `${id}-hint` : undefined, error ? `${id}-error` : undefined].filter(Boolean);
  return ids.length > 0 ? ids.join(' ') : undefined;
}

const Hint: FC<{ id: string; hint: string | undefined }> = ({ id, hint }) =>
  hint ? (
    <p class="hint" id={`${id}-hint`}>
      {hint}
    </p>
  ) : null;

/** What every labelled control is wrapped in: its label (saying when it is optional), hint and error. */
const Labelled: FC<Omit<FieldProps, 'name' | 'value'> & { children: unknown }> = ({ id, label, error, hint, required, children }) => (
  <div class={`field${error ? ' has-error' : ''}`}>
    <label for={id}>
      {label}
      {required ? null : <span class="optional"> (optional)</span>}
    </label>
    <Hint id={id} hint={hint} />
    {children}
    <FieldError id={id} message={error} />
  </div>
);

/** A labelled <input>, with its hint and error message. */
export const InputField: FC<
  FieldProps & { type?: string; autocomplete?: string; placeholder?: string; min?: number; max?: number; step?: number | string; maxlength?: number }
> = ({ id, name, label, value, error, hint, required, type = 'text', autocomplete, placeholder, min, max, step, maxlength }) => (
  <Labelled id={id} label={label} error={error} hint={hint} required={required}>
    <input
      id={id}
      name={name}
      type={type}
      value={value ?? ''}
      required={required}
      autocomplete={autocomplete}
      placeholder={placeholder}
      min={min}
      max={max}
      step={step}
      maxlength={maxlength}
      aria-invalid={error ? 'true' : undefined}
      aria-describedby={describedBy(id, hint, error)}
    />
  </Labelled>
);

/** A labelled <textarea>. */
export const TextAreaField: FC<FieldProps & { rows?: number; code?: boolean }> = ({ id, name, label, value, error, hint, required, rows = 4, code }) => (
  <Labelled id={id} label={label} error={error} hint={hint} required={required}>
    <textarea
      id={id}
      name={name}
      rows={rows}
      class={code ? 'code' : undefined}
      aria-invalid={error ? 'true' : undefined}
      aria-describedby={describedBy(id, hint, error)}
    >
      {value ?? ''}
    </textarea>
  </Labelled>
);

/** A labelled <select>; `options` as [value, label]. */
export const SelectField: FC<FieldProps & { options: [string, string][]; class?: string }> = ({ id, name, label, value, error, hint, required, options, class: className }) => (
  <Labelled id={id} label={label} error={error} hint={hint} required={required}>
    <select id={id} name={name} class={className} aria-invalid={error ? 'true' : undefined} aria-describedby={describedBy(id, hint, error)}>
      {options.map(([optionValue, optionLabel]) => (
        <option value={optionValue} selected={optionValue === value}>
          {optionLabel}
        </option>
      ))}
    </select>
  </Labelled>
);

/** A labelled checkbox. */
export const CheckboxField: FC<Omit<FieldProps, 'value' | 'required'> & { checked: boolean }> = ({ id, name, label, checked, error, hint }) => (
  <div class={`field checkbox${error ? ' has-error' : ''}`}>
    <input id={id} name={name} type="checkbox" value="true" checked={checked} aria-describedby={describedBy(id, hint, error)} />
    <label for={id}>{label}</label>
    <Hint id={id} hint={hint} />
    <FieldError id={id} message={error} />
  </div>
);
