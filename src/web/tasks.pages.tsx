import { Hono, type Context } from 'hono';
import type { FC } from 'hono/jsx';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { roleAtLeast, type Role } from '../http/types.js';
import { toValidationIssues } from '../http/validation.js';
import * as v from 'valibot';
import type { TaskListing } from '../tasks/task-listing.js';
import { TASK_STATUSES, TaskListQuery, type StatusCounts, type TaskPageOut } from '../tasks/task-listing.schemas.js';
import type { TaskLogOut, TaskOut } from '../tasks/tasks.schemas.js';
import type { TaskService } from '../tasks/tasks.service.js';
import { actionOf, between, formatSeconds, formatTime, prettyJson, shortId, summaryOf } from './format.js';
import { signedInFrame, type WebKit } from './kit.js';
import { ActionButton, Layout, Notice, paths, renderPage, StatusBadge, statusLabel, type Frame } from './layout.js';
import type { SignedInEnv } from './session.js';

const CANCELABLE = new Set(['queued', 'in_progress']);
const RETRYABLE = new Set(['failed', 'canceled']);

/** Messages a redirect may ask a page to show, by a fixed key: no text travels in the URL. */
const NOTICES: Record<string, string> = {
  created: 'Task created.',
  canceled: 'Task canceled.',
  retried: 'Retry created: this is the new task.',
};

/** The query of the list page: GET /api/v1/tasks's, with the empty fields of a submitted filter form left out. */
function listQuery(c: Context): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {};
  for (const [name, values] of Object.entries(c.req.queries())) {
    const given = values.filter((value) => value !== '');
    if (given.length > 0) query[name] = given.length === 1 && name !== 'status' ? given[0]! : given;
  }
  return query;
}

/** A list URL with these parameters. */
function listUrl(query: Record<string, string | string[] | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    for (const item of Array.isArray(value) ? value : value === undefined ? [] : [value]) search.append(name, item);
  }
  const text = search.toString();
  return text ? `${paths.tasks}?${text}` : paths.tasks;
}

/** What the Duration column says: how long it ran, runs, or when it is due. */
function durationOf(task: TaskOut, now: number): string {
  if (task.status === 'in_progress') return `${between(task.started_at, null, now)} so far`;
  if (task.status === 'queued') {
    return task.scheduled_for && Date.parse(task.scheduled_for) > now ? `due ${formatTime(task.scheduled_for).slice(11)}` : 'waiting';
  }
  return task.started_at ? between(task.started_at, task.finished_at, now) : '—';
}

const Counts: FC<{ counts: StatusCounts; total: number; selected: string[] }> = ({ counts, total, selected }) => (
  <ul class="counts" id="task-counts" data-live-region aria-label="Tasks by status">
    <li>
      <a href={paths.tasks} class="count total" aria-current={selected.length === 0 ? 'true' : undefined}>
        <span class="number">{total}</span>
        <span class="label">All tasks</span>
      </a>
    </li>
    {TASK_STATUSES.map((status) => (
      <li>
        <a
          href={listUrl({ status })}
          class={`count status-${status}`}
          aria-current={selected.length === 1 && selected[0] === status ? 'true' : undefined}
        >
          <span class="number" data-count={status}>
            {counts[status]}
          </span>
          <span class="label">{statusLabel(status)}</span>
        </a>
      </li>
    ))}
  </ul>
);

const KINDS: [string, string][] = [
  ['', 'Any kind'],
  ['task', 'Tasks'],
  ['aoa', 'AOA jobs'],
];

const Filters: FC<{ query: Record<string, string | string[]>; actions: string[] }> = ({ query, actions }) => {
  const statuses = ([] as string[]).concat(query.status ?? []);
  const action = typeof query.action === 'string' ? query.action : '';
  return (
    <form method="get" action={paths.tasks} class="filters" role="search" aria-label="Filter tasks">
      <fieldset class="status-filter">
        <legend>Status</legend>
        {TASK_STATUSES.map((status) => (
          <label class="chip">
            <input type="checkbox" name="status" value={status} checked={statuses.includes(status)} />
            {statusLabel(status)}
          </label>
        ))}
      </fieldset>
      <div class="field">
        <label for="filter-kind">Kind</label>
        <select id="filter-kind" name="kind">
          {KINDS.map(([value, label]) => (
            <option value={value} selected={value === (typeof query.kind === 'string' ? query.kind : '')}>
              {label}
            </option>
          ))}
        </select>
      </div>
      <div class="field">
        <label for="filter-action">Action</label>
        <select id="filter-action" name="action">
          <option value="">Any action</option>
          {[...new Set([...actions, ...(action ? [action] : [])])].sort().map((name) => (
            <option value={name} selected={name === action}>
              {name}
            </option>
          ))}
        </select>
      </div>
      <div class="field grow">
        <label for="filter-q">Search payloads</label>
        <input id="filter-q" name="q" type="search" value={typeof query.q === 'string' ? query.q : ''} placeholder="channel, message, …" />
      </div>
      <div class="filter-buttons">
        <button type="submit" class="button primary">
          Apply
        </button>
        <a class="button plain" href={paths.tasks}>
          Clear
        </a>
      </div>
    </form>
  );
};

const TaskRows: FC<{ page: TaskPageOut; query: Record<string, string | string[]>; filtered: boolean; now: number }> = ({ page, query, filtered, now }) => {
  const { cursor, ...filters } = query;
  return (
    <div id="task-list" data-live-region>
      {page.items.length === 0 ? (
        <p class="empty">
          {filtered || cursor ? 'No tasks match on this page.' : 'No tasks yet.'}
          {page.next_cursor && ' Older tasks may match: see the next page.'}
        </p>
      ) : (
        <div class="table-wrap">
          <table class="tasks">
            <caption class="visually-hidden">Tasks, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Task</th>
                <th scope="col">Status</th>
                <th scope="col">Action</th>
                <th scope="col">Created</th>
                <th scope="col">Duration</th>
                <th scope="col" class="number">
                  Retries
                </th>
              </tr>
            </thead>
            <tbody>
              {page.items.map((task) => (
                <tr data-task-id={task.id}>
                  <td class="id-cell">
                    <a href={paths.task(task.id)} class="task-link">
                      <code>{shortId(task.id)}</code>
                    </a>
                    {task.kind === 'aoa' && <span class="tag">AOA</span>}
                  </td>
                  <td class="status-cell">
                    <StatusBadge status={task.status} />
                  </td>
                  <td class="action-cell">
                    {actionOf(task.payload)}
                    <span class="summary">{summaryOf(task.payload)}</span>
                  </td>
                  <td class="created-cell">
                    <time datetime={task.created_at}>{formatTime(task.created_at)}</time>
                  </td>
                  <td class="duration-cell" data-label="Duration">
                    {durationOf(task, now)}
                  </td>
                  <td class="number retries-cell" data-label="Retries">
                    {task.retry_count}/{task.max_retries}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav class="pager" aria-label="Pages">
        {cursor && <a href={listUrl(filters)}>← Newest</a>}
        {page.next_cursor && (
          <a href={listUrl({ ...filters, cursor: page.next_cursor })} rel="next">
            Older tasks →
          </a>
        )}
      </nav>
    </div>
  );
};

const TaskListPage: FC<{
  frame: Frame;
  counts: StatusCounts;
  total: number;
  actions: string[];
  query: Record<string, string | string[]>;
  page: TaskPageOut | undefined;
  errors: string[];
  canCreate: boolean;
}> = ({ frame, counts, total, actions, query, page, errors, canCreate }) => {
  const selected = ([] as string[]).concat(query.status ?? []);
  const filtered = query.action !== undefined || query.q !== undefined || query.kind !== undefined || selected.length > 0;
  return (
    <Layout frame={frame} title="Tasks" section="tasks" live="tasks">
      <div class="page-head">
        <h1>Tasks</h1>
        {canCreate && (
          <a class="button primary" href={paths.newTask}>
            New task
          </a>
        )}
      </div>
      <Counts counts={counts} total={total} selected={selected} />
      <Filters query={query} actions={actions} />
      {errors.length > 0 && (
        <Notice kind="error">
          <ul>
            {errors.map((message) => (
              <li>{message}</li>
            ))}
          </ul>
        </Notice>
      )}
      {page && <TaskRows page={page} query={query} filtered={filtered} now={Date.now()} />}
    </Layout>
  );
};

/** The steps a task's chain has yet to create: the `on_success_next_task` bodies beyond the last task that exists. */
function plannedSteps(last: TaskOut | undefined): string[] {
  const steps: string[] = [];
  let next = last && !last.next_task_id ? last.on_success_next_task : null;
  while (next && typeof next === 'object') {
    const body = next as { payload?: Record<string, unknown>; on_success_next_task?: unknown };
    steps.push(body.payload ? actionOf(body.payload) : '—');
    next = (body.on_success_next_task ?? null) as Record<string, unknown> | null;
  }
  return steps;
}

const TaskLink: FC<{ task: TaskOut; current?: boolean }> = ({ task, current }) => (
  <>
    {current ? (
      <span class="this-task">
        <code>{shortId(task.id)}</code> (this task)
      </span>
    ) : (
      <a href={paths.task(task.id)}>
        <code>{shortId(task.id)}</code>
      </a>
    )}{' '}
    <StatusBadge status={task.status} /> <span class="muted">{actionOf(task.payload)}</span>
  </>
);

const Chain: FC<{ task: TaskOut; chain: TaskOut[]; retriedAs: TaskOut[] }> = ({ task, chain, retriedAs }) => {
  const planned = plannedSteps(chain.at(-1));
  const index = chain.findIndex((member) => member.id === task.id);
  return (
    <section class="card" aria-labelledby="chain-heading">
      <h2 id="chain-heading">Chain</h2>
      {chain.length + planned.length > 1 ? (
        <ol class="chain">
          {chain.map((member) => (
            <li class={member.id === task.id ? 'current' : undefined}>
              <TaskLink task={member} current={member.id === task.id} />
            </li>
          ))}
          {planned.map((action) => (
            <li class="planned">
              <span class="muted">Not created yet:</span> {action}, when the step before succeeds
            </li>
          ))}
        </ol>
      ) : (
        <p class="muted">Not part of a chain.</p>
      )}
      <dl class="facts">
        <dt>Parent</dt>
        <dd>{index > 0 ? <TaskLink task={chain[index - 1]!} /> : 'none'}</dd>
        <dt>Next</dt>
        <dd>{index >= 0 && chain[index + 1] ? <TaskLink task={chain[index + 1]!} /> : planned.length > 0 && index === chain.length - 1 ? `${planned[0]}, on success` : 'none'}</dd>
        <dt>Retry of</dt>
        <dd>
          {task.retry_of ? (
            <a href={paths.task(task.retry_of)}>
              <code>{shortId(task.retry_of)}</code>
            </a>
          ) : (
            'none'
          )}
        </dd>
        <dt>Retried as</dt>
        <dd>
          {retriedAs.length === 0
            ? 'none'
            : retriedAs.map((retry) => (
                <div>
                  <TaskLink task={retry} />
                </div>
              ))}
        </dd>
      </dl>
    </section>
  );
};

const Timings: FC<{ task: TaskOut; now: number }> = ({ task, now }) => {
  const due = task.scheduled_for ?? task.created_at;
  return (
    <section class="card" aria-labelledby="timings-heading">
      <h2 id="timings-heading">Timings</h2>
      <dl class="facts">
        <dt>Created</dt>
        <dd>
          <time datetime={task.created_at}>{formatTime(task.created_at)}</time>
        </dd>
        <dt>Scheduled for</dt>
        <dd>{task.scheduled_for ? <time datetime={task.scheduled_for}>{formatTime(task.scheduled_for)}</time> : 'at once'}</dd>
        <dt>Started</dt>
        <dd>{task.started_at ? <time datetime={task.started_at}>{formatTime(task.started_at)}</time> : '—'}</dd>
        <dt>Finished</dt>
        <dd>{task.finished_at ? <time datetime={task.finished_at}>{formatTime(task.finished_at)}</time> : '—'}</dd>
        <dt>Pickup</dt>
        <dd>{task.started_at ? between(due, task.started_at, now) : task.status === 'queued' ? `waiting ${between(due, null, now)}` : '—'}</dd>
        <dt>Run</dt>
        <dd>{task.started_at ? `${between(task.started_at, task.finished_at, now)}${task.finished_at ? '' : ' so far'}` : '—'}</dd>
      </dl>
    </section>
  );
};

const Retries: FC<{ task: TaskOut; delays: readonly number[] }> = ({ task, delays }) => {
  const schedule = Array.from({ length: task.max_retries }, (_, index) => formatSeconds(delays[Math.min(index, delays.length - 1)] ?? 0));
  const waitingForRetry = task.status === 'queued' && task.retry_count > 0 && task.scheduled_for;
  return (
    <section class="card" aria-labelledby="retries-heading">
      <h2 id="retries-heading">Retries</h2>
      <dl class="facts">
        <dt>Used</dt>
        <dd>
          {task.retry_count} of {task.max_retries}
        </dd>
        <dt>Schedule</dt>
        <dd>{schedule.length > 0 ? `after ${schedule.join(', ')}` : 'no retries'}</dd>
        {waitingForRetry && (
          <>
            <dt>Next attempt</dt>
            <dd>
              <time datetime={task.scheduled_for!}>{formatTime(task.scheduled_for)}</time>
            </dd>
          </>
        )}
        <dt>Timeout</dt>
        <dd>{task.timeout_seconds ? formatSeconds(task.timeout_seconds) : 'none'}</dd>
        <dt>Priority</dt>
        <dd>{task.priority}</dd>
        <dt>Callback</dt>
        <dd class="wrap">{task.callback_url ?? 'none'}</dd>
      </dl>
    </section>
  );
};

const AuditTrail: FC<{ logs: TaskLogOut[] }> = ({ logs }) => (
  <section class="card" aria-labelledby="audit-heading">
    <h2 id="audit-heading">Audit trail</h2>
    <ol class="timeline">
      {logs.map((log) => (
        <li>
          <time datetime={log.timestamp}>{formatTime(log.timestamp)}</time>
          <p>{log.message}</p>
        </li>
      ))}
    </ol>
  </section>
);

interface TaskDetail {
  task: TaskOut;
  logs: TaskLogOut[];
  chain: TaskOut[];
  retriedAs: TaskOut[];
}

const TaskPage: FC<{ frame: Frame; detail: TaskDetail; role: Role; delays: readonly number[]; notice?: { kind: 'success' | 'error'; text: string } }> = ({
  frame,
  detail,
  role,
  delays,
  notice,
}) => {
  const { task, logs, chain, retriedAs } = detail;
  const mayChange = roleAtLeast(role, 'member');
  const now = Date.now();
  return (
    <Layout frame={frame} title={`Task ${shortId(task.id)}`} section="tasks" live={`task:${task.id}`}>
      <nav class="breadcrumbs" aria-label="Breadcrumbs">
        <a href={paths.tasks}>Tasks</a> <span aria-hidden="true">/</span> <span>{shortId(task.id)}</span>
      </nav>
      {notice && <Notice kind={notice.kind}>{notice.text}</Notice>}
      <div id="task-detail" data-live-region data-chain={chain.map((member) => member.id).join(' ')}>
        <div class="page-head">
          <h1>
            {actionOf(task.payload)} <code class="id">{task.id}</code>
          </h1>
          <StatusBadge status={task.status} />
          {task.kind === 'aoa' && <span class="tag">AOA job</span>}
          <div class="actions">
            {mayChange && CANCELABLE.has(task.status) && (
              <ActionButton action={`${paths.task(task.id)}/cancel`} csrf={frame.csrf} label="Cancel task" variant="danger" />
            )}
            {mayChange && RETRYABLE.has(task.status) && <ActionButton action={`${paths.task(task.id)}/retry`} csrf={frame.csrf} label="Retry" variant="primary" />}
          </div>
        </div>
        <div class="grid three">
          <Timings task={task} now={now} />
          <Retries task={task} delays={delays} />
          <Chain task={task} chain={chain} retriedAs={retriedAs} />
        </div>
        <div class="grid two">
          <section class="card" aria-labelledby="payload-heading">
            <h2 id="payload-heading">Payload</h2>
            <pre class="json" tabindex={0}>
              {prettyJson(task.payload)}
            </pre>
          </section>
          <section class="card" aria-labelledby="result-heading">
            <h2 id="result-heading">Result</h2>
            {task.result ? (
              <pre class="json" tabindex={0}>
                {prettyJson(task.result)}
              </pre>
            ) : (
              <p class="muted">No result yet.</p>
            )}
          </section>
        </div>
        <AuditTrail logs={logs} />
      </div>
    </Layout>
  );
};

/** The task list and a task's page, with its cancel and retry buttons. */
export function taskPages(kit: WebKit, services: { tasks: TaskService; listing: TaskListing; config: Pick<Config, 'retryDelaysSeconds'> }) {
  const { tasks, listing, config } = services;
  const { signedIn } = kit.sessions;

  async function loadDetail(c: Context<SignedInEnv>, id: string): Promise<TaskDetail> {
    const auth = c.get('auth');
    // The task first: an unknown or foreign id is a not-found page before anything else is read.
    const task = await tasks.get(auth, id);
    const [logs, links] = await Promise.all([tasks.logs(auth, id), tasks.links(auth, id)]);
    return { task, logs, ...links };
  }

  async function showTask(c: Context<SignedInEnv>, id: string, notice?: { kind: 'success' | 'error'; text: string }, status: ContentfulStatusCode = 200) {
    const detail = await loadDetail(c, id);
    return renderPage(c, <TaskPage frame={signedInFrame(kit, c)} detail={detail} role={c.get('auth').role} delays={config.retryDelaysSeconds} notice={notice} />, status);
  }

  /** A refusal the task page explains (the task changed meanwhile, a limit), rather than an error page. */
  const explainable = (error: unknown): error is AppError =>
    error instanceof AppError && (error.code === 'conflict' || error.code === 'too_many_requests') && typeof error.detail === 'string';

  return new Hono<SignedInEnv>()
    .get('/tasks', signedIn('viewer'), async (c) => {
      const auth = c.get('auth');
      const query = listQuery(c);
      const parsed = v.safeParse(TaskListQuery, query, { abortPipeEarly: true });
      const [stats, page] = await Promise.all([listing.stats(auth, {}), parsed.success ? listing.list(auth, parsed.output) : undefined]);
      const errors = parsed.success ? [] : toValidationIssues(parsed.issues, 'query').map((issue) => issue.msg);
      return renderPage(
        c,
        <TaskListPage
          frame={signedInFrame(kit, c)}
          counts={stats.by_status}
          total={stats.total}
          actions={Object.keys(stats.by_action)}
          query={query}
          page={page}
          errors={errors}
          canCreate={roleAtLeast(auth.role, 'member')}
        />,
        parsed.success ? 200 : 422,
      );
    })
    .get('/tasks/:id', signedIn('viewer'), async (c) => {
      const text = NOTICES[c.req.query('notice') ?? ''];
      return showTask(c, c.req.param('id'), text ? { kind: 'success', text } : undefined);
    })
    .post('/tasks/:id/cancel', signedIn('member'), async (c) => {
      const id = c.req.param('id');
      try {
        await tasks.cancel(c.get('auth'), id);
      } catch (error) {
        if (!explainable(error)) throw error;
        return showTask(c, id, { kind: 'error', text: error.detail as string }, error.status as ContentfulStatusCode);
      }
      return c.redirect(`${paths.task(id)}?notice=canceled`, 303);
    })
    .post('/tasks/:id/retry', signedIn('member'), async (c) => {
      const id = c.req.param('id');
      let retry: TaskOut;
      try {
        retry = await tasks.retry(c.get('auth'), id);
      } catch (error) {
        if (!explainable(error)) throw error;
        return showTask(c, id, { kind: 'error', text: error.detail as string }, error.status as ContentfulStatusCode);
      }
      return c.redirect(`${paths.task(retry.id)}?notice=retried`, 303);
    });
}
