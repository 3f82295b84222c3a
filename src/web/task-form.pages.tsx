import { Hono, type Context } from 'hono';
import type { FC } from 'hono/jsx';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { AppError } from '../errors.js';
import { CreateTaskBody, MAX_CHAIN_DEPTH, MAX_DELAY_SECONDS, MAX_PRIORITY, MIN_PRIORITY, type TaskBody } from '../tasks/tasks.schemas.js';
import type { TaskService } from '../tasks/tasks.service.js';
import { actionForms, payloadFrom, type ActionField, type ActionForm } from './action-fields.js';
import { CheckboxField, InputField, SelectField, TextAreaField } from './fields.js';
import { errorsByField, formFields, noErrors, parseForm, type FormErrors } from './forms.js';
import { signedInFrame, type WebKit } from './kit.js';
import { CsrfField, Layout, Notice, paths, renderPage, type Frame } from './layout.js';
import type { SignedInEnv } from './session.js';

// The new-task form: one fieldset per step of a chain, each step running when the one before it
// succeeds. It works without JavaScript: "Add a chained step" and "Remove" submit the form, which
// comes back with the values kept and one step more or less; only "Create task" creates. Every
// action's fields are in each step; the stylesheet shows those of the chosen action (see
// actionVisibilityCss), and the others are ignored on submit.

const MAX_STEPS = MAX_CHAIN_DEPTH + 1;

/** The options every step has beside its payload: the task body's other fields. */
const OPTIONS = ['delay_seconds', 'run_at', 'max_retries', 'timeout_seconds', 'priority', 'callback_url'] as const;
type Option = (typeof OPTIONS)[number];

/** A form field's name: `s0.action`, `s0.a.post_to_slack.channel`, `s0.delay_seconds`. */
const names = {
  action: (step: number) => `s${step}.action`,
  payload: (step: number, action: string, field: string) => `s${step}.a.${action}.${field}`,
  option: (step: number, option: Option) => `s${step}.${option}`,
};
/** An element id for a field name (ids with dots are valid, but awkward in selectors). */
const idOf = (name: string) => name.replace(/\./g, '-');

/**
 * The stylesheet rules that show a step's fields of the chosen action only. Where :has() is not
 * supported every action's fields stay visible, each under its action's name: still usable.
 */
export function actionVisibilityCss(actions: readonly ActionForm[]): string {
  const rules = actions.map(
    ({ name }) => `  .step:has(.action-select option[value="${name}"]:checked) .action-fields[data-action="${name}"] { display: block; }`,
  );
  return `\n/* Generated from the action registry: a step shows the fields of its chosen action. */\n@supports selector(:has(*)) {\n  .action-fields { display: none; }\n  .action-fields-title { display: none; }\n${rules.join('\n')}\n}\n`;
}

/** The submitted values, and how many steps the form has. */
interface FormState {
  steps: number;
  values: Record<string, string>;
}

/** The task body the form describes: step 0 with step 1 as its on_success_next_task, and so on. */
function bodyFrom(state: FormState, actions: readonly ActionForm[]): { body: TaskBody; errors: FormErrors } {
  const errors = noErrors();
  let body: TaskBody | undefined;
  for (let step = state.steps - 1; step >= 0; step -= 1) {
    const actionName = state.values[names.action(step)] ?? '';
    const action = actions.find((candidate) => candidate.name === actionName);
    let payload: Record<string, unknown> = { action: actionName };
    if (action) {
      const converted = payloadFrom(action, (field) => state.values[names.payload(step, action.name, field)]);
      payload = converted.payload;
      for (const [field, message] of Object.entries(converted.errors)) errors.fields[names.payload(step, action.name, field)] = message;
    }
    const task: Record<string, unknown> = { payload };
    for (const option of OPTIONS) {
      const given = (state.values[names.option(step, option)] ?? '').trim();
      if (given === '') continue;
      if (option === 'callback_url') task[option] = given;
      // datetime-local sends minutes (or seconds) without a zone; the label says it is UTC.
      else if (option === 'run_at') task[option] = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(given) ? `${given}:00Z` : /T\d{2}:\d{2}:\d{2}(\.\d+)?$/.test(given) ? `${given}Z` : given;
      else task[option] = /^-?\d+$/.test(given) ? Number(given) : given;
    }
    if (body) task.on_success_next_task = body;
    body = task as unknown as TaskBody;
  }
  return { body: body!, errors };
}

/** The form field an API validation issue is about: `loc` after "body", down the chain. */
function fieldOf(loc: (string | number)[], state: FormState): string | undefined {
  let step = 0;
  while (loc[step] === 'on_success_next_task') step += 1;
  const rest = loc.slice(step);
  if (rest.length === 0) return undefined;
  if (rest[0] === 'payload') {
    const action = state.values[names.action(step)] ?? '';
    if (rest.length === 1 || rest[1] === 'action') return names.action(step);
    return names.payload(step, action, String(rest[1]));
  }
  return OPTIONS.includes(rest[0] as Option) ? names.option(step, rest[0] as Option) : undefined;
}

const PayloadField: FC<{ step: number; action: string; field: ActionField; value: string | undefined; error: string | undefined }> = ({ step, action, field, value, error }) => {
  const name = names.payload(step, action, field.name);
  const common = { id: idOf(name), name, label: field.label, value, error, hint: field.hint, required: field.required };
  switch (field.kind) {
    case 'text':
      return <InputField {...common} type={field.url ? 'url' : 'text'} maxlength={field.maxLength} />;
    case 'textarea':
      return <TextAreaField {...common} rows={4} />;
    case 'number':
      return <InputField {...common} type="number" min={field.min} max={field.max} step={1} />;
    case 'boolean':
      return <CheckboxField id={common.id} name={name} label={field.label} checked={value === 'true'} error={error} hint={field.hint} />;
    case 'choice':
      return <SelectField {...common} options={[...(field.required ? [] : [['', '—'] as [string, string]]), ...(field.options ?? []).map((option): [string, string] => [option, option])]} />;
    case 'json':
      return <TextAreaField {...common} rows={3} code />;
  }
};

const StepFields: FC<{ step: number; actions: readonly ActionForm[]; state: FormState; errors: FormErrors; focus: boolean }> = ({ step, actions, state, errors, focus }) => {
  const value = (name: string) => state.values[name];
  const chosen = value(names.action(step)) ?? actions[0]?.name ?? '';
  const optionError = OPTIONS.some((option) => errors.fields[names.option(step, option)]);
  const optionGiven = OPTIONS.some((option) => (value(names.option(step, option)) ?? '') !== '');
  const option = (name: Option) => ({ id: idOf(names.option(step, name)), name: names.option(step, name), value: value(names.option(step, name)), error: errors.fields[names.option(step, name)] });
  const actionName = names.action(step);
  return (
    <fieldset class="step card">
      <legend>
        Step {step + 1}
        {step > 0 && <span class="muted"> · runs when step {step} succeeds</span>}
      </legend>
      <div class={`field${errors.fields[actionName] ? ' has-error' : ''}`}>
        <label for={idOf(actionName)}>Action</label>
        <select
          id={idOf(actionName)}
          name={actionName}
          class="action-select"
          autofocus={focus}
          aria-invalid={errors.fields[actionName] ? 'true' : undefined}
          aria-describedby={errors.fields[actionName] ? `${idOf(actionName)}-error` : undefined}
        >
          {actions.map((action) => (
            <option value={action.name} selected={action.name === chosen}>
              {action.name}
            </option>
          ))}
        </select>
        {errors.fields[actionName] && (
          <p class="field-error" id={`${idOf(actionName)}-error`}>
            {errors.fields[actionName]}
          </p>
        )}
      </div>
      {actions.map((action) => (
        <div class="action-fields" data-action={action.name}>
          <p class="action-fields-title">{action.name}</p>
          {action.fields.map((field) => (
            <PayloadField
              step={step}
              action={action.name}
              field={field}
              value={value(names.payload(step, action.name, field.name))}
              error={errors.fields[names.payload(step, action.name, field.name)]}
            />
          ))}
        </div>
      ))}
      <details class="options" open={optionError || optionGiven}>
        <summary>Scheduling, retries, timeout and callback</summary>
        <div class="option-grid">
          <InputField {...option('delay_seconds')} label="Delay (seconds)" type="number" min={0} max={MAX_DELAY_SECONDS} hint="Run this long after it is created." />
          <InputField {...option('run_at')} label="Run at (UTC)" type="datetime-local" hint="Or at this time; not both." />
          <InputField {...option('max_retries')} label="Retries" type="number" min={0} max={10} hint="0 to 10; default 0." />
          <InputField {...option('timeout_seconds')} label="Timeout (seconds)" type="number" min={1} max={86_400} hint="Per attempt." />
          <InputField {...option('priority')} label="Priority" type="number" min={MIN_PRIORITY} max={MAX_PRIORITY} hint={`${MIN_PRIORITY} to ${MAX_PRIORITY}; higher runs first.`} />
          <InputField {...option('callback_url')} label="Callback URL" type="url" placeholder="https://example.com/hook" hint="Receives the task when it finishes." />
        </div>
      </details>
      {step > 0 && (
        <button type="submit" name="intent" value={`remove:${step}`} class="button plain small">
          Remove step {step + 1}
        </button>
      )}
    </fieldset>
  );
};

const NewTaskPage: FC<{ frame: Frame; actions: readonly ActionForm[]; state: FormState; errors: FormErrors; focusStep?: number }> = ({ frame, actions, state, errors, focusStep }) => (
  <Layout frame={frame} title="New task" section="new">
    <div class="page-head">
      <h1>New task</h1>
    </div>
    <p class="lead">Choose what the task does. Add chained steps to run one after the other, each when the one before it succeeds.</p>
    {(errors.general.length > 0 || Object.keys(errors.fields).length > 0) && (
      <Notice kind="error">
        {errors.general.length > 0 ? (
          <ul>
            {errors.general.map((message) => (
              <li>{message}</li>
            ))}
          </ul>
        ) : (
          'Some fields need another look: see the messages next to them.'
        )}
      </Notice>
    )}
    <form method="post" action={paths.newTask} class="task-form" novalidate>
      <CsrfField token={frame.csrf} />
      <input type="hidden" name="steps" value={String(state.steps)} />
      {/* The form's default button (Enter in a field) creates; it comes first so no "Remove" is the default. */}
      <button type="submit" name="intent" value="create" class="visually-hidden" tabindex={-1} aria-hidden="true">
        Create task
      </button>
      {Array.from({ length: state.steps }, (_, step) => (
        <StepFields step={step} actions={actions} state={state} errors={errors} focus={step === focusStep} />
      ))}
      <div class="form-actions">
        {state.steps < MAX_STEPS && (
          <button type="submit" name="intent" value="add" class="button">
            Add a chained step
          </button>
        )}
        <button type="submit" name="intent" value="create" class="button primary">
          Create task
        </button>
      </div>
    </form>
  </Layout>
);

/** The form's state from a submission: values, and the step count within bounds. */
function stateFrom(fields: Record<string, string>): FormState {
  const steps = Number(fields.steps);
  return { steps: Number.isInteger(steps) && steps >= 1 && steps <= MAX_STEPS ? steps : 1, values: fields };
}

/** The values with step `removed` taken out and the steps after it moved up. */
function withoutStep(state: FormState, removed: number): FormState {
  const values: Record<string, string> = {};
  for (const [name, value] of Object.entries(state.values)) {
    const match = /^s(\d+)\.(.*)$/.exec(name);
    if (!match) values[name] = value;
    else if (Number(match[1]) < removed) values[name] = value;
    else if (Number(match[1]) > removed) values[`s${Number(match[1]) - 1}.${match[2]}`] = value;
  }
  return { steps: state.steps - 1, values };
}

/** GET and POST /tasks/new (members and above). */
export function taskFormPages(kit: WebKit, deps: { tasks: TaskService; maxTaskBytes: number }) {
  const { tasks, maxTaskBytes } = deps;
  const actions = actionForms();
  const { signedIn } = kit.sessions;
  const show = (c: Context<SignedInEnv>, state: FormState, errors: FormErrors, status: ContentfulStatusCode = 200, focusStep?: number) =>
    renderPage(c, <NewTaskPage frame={signedInFrame(kit, c)} actions={actions} state={state} errors={errors} focusStep={focusStep} />, status);

  return new Hono<SignedInEnv>()
    .get('/tasks/new', signedIn('member'), (c) => show(c, { steps: 1, values: {} }, noErrors()))
    .post('/tasks/new', signedIn('member'), async (c) => {
      const fields = await formFields(c);
      const state = stateFrom(fields);
      const intent = fields.intent ?? 'create';
      if (intent === 'add' && state.steps < MAX_STEPS) return show(c, { ...state, steps: state.steps + 1 }, noErrors(), 200, state.steps);
      const removed = /^remove:(\d+)$/.exec(intent);
      if (removed && Number(removed[1]) > 0 && Number(removed[1]) < state.steps) {
        return show(c, withoutStep(state, Number(removed[1])), noErrors(), 200, Number(removed[1]) - 1);
      }

      const { body, errors } = bodyFrom(state, actions);
      const parsed = parseForm(CreateTaskBody, body);
      if (!parsed.ok) {
        const found = errorsByField(parsed.issues, (loc) => fieldOf(loc, state));
        return show(c, state, { fields: { ...found.fields, ...errors.fields }, general: found.general }, 422);
      }
      if (Object.keys(errors.fields).length > 0) return show(c, state, errors, 422);
      // What POST /api/v1/tasks refuses with 413 (MAX_TASK_PAYLOAD_BYTES).
      if (maxTaskBytes > 0 && Buffer.byteLength(JSON.stringify(parsed.value)) > maxTaskBytes) {
        return show(c, state, { fields: {}, general: [`The task is larger than ${maxTaskBytes} bytes`] }, 413);
      }
      try {
        const created = await tasks.create(c.get('auth'), parsed.value);
        return c.redirect(`${paths.task(created.id)}?notice=created`, 303);
      } catch (error) {
        if (error instanceof AppError && error.code === 'validation' && Array.isArray(error.detail)) {
          return show(c, state, errorsByField(error.detail, (loc) => fieldOf(loc, state)), 422);
        }
        if (error instanceof AppError && error.code === 'too_many_requests' && typeof error.detail === 'string') {
          return show(c, state, { fields: {}, general: [error.detail] }, 429);
        }
        throw error;
      }
    });
}
