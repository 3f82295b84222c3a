import { Hono, type Context } from 'hono';
import type { FC } from 'hono/jsx';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { AoaJob, AoaService } from '../aoa/aoa.service.js';
import { AppError } from '../errors.js';
import { roleAtLeast } from '../http/types.js';
import type { TaskLogOut, TaskOut } from '../tasks/tasks.schemas.js';
import type { TaskService } from '../tasks/tasks.service.js';
import { actionOf, between, formatTime, prettyJson } from './format.js';
import { signedInFrame, type WebKit } from './kit.js';
import { ActionButton, Layout, Notice, paths, renderPage, StatusBadge, type Frame } from './layout.js';
import type { SignedInEnv } from './session.js';
import { readForm } from './read-form.js';

const JOB_LABELS: Record<string, string> = {
  aoa_connect: 'Run (connect)',
  aoa_reset: 'Reset',
  aoa_toggle_dev_mode: 'Production mode',
};

const jobLabel = (task: TaskOut) => {
  const label = JOB_LABELS[actionOf(task.payload)] ?? actionOf(task.payload);
  return task.payload.action === 'aoa_toggle_dev_mode' ? `${label} ${task.payload.enabled ? 'on' : 'off'}` : label;
};

interface AoaView {
  /** The backend's answer, or why there is none. */
  state: { ok: true; status: number; body: unknown } | { ok: false; message: string };
  active: { job: TaskOut; logs: TaskLogOut[] } | undefined;
}

type Message = { kind: 'success' | 'error'; text: string; taskId?: string };

/** Where an active job is: queued, running (which attempt), finished. */
const Progress: FC<{ job: TaskOut }> = ({ job }) => {
  const stage = job.status === 'queued' ? 0 : job.status === 'in_progress' ? 1 : 2;
  const stages = ['Queued', job.retry_count > 0 ? `Running, attempt ${job.retry_count + 1} of ${job.max_retries + 1}` : 'Running', 'Finished'];
  return (
    <ol class="stepper" aria-label="Progress">
      {stages.map((label, index) => (
        <li class={index < stage ? 'done' : index === stage ? 'current' : undefined} aria-current={index === stage ? 'step' : undefined}>
          {label}
        </li>
      ))}
    </ol>
  );
};

const AoaPage: FC<{ frame: Frame; view: AoaView; canRun: boolean; message?: Message }> = ({ frame, view, canRun, message }) => {
  const { state, active } = view;
  const now = Date.now();
  return (
    <Layout frame={frame} title="AOA" section="aoa" live="aoa">
      <div class="page-head">
        <h1>AOA</h1>
      </div>
      {message && (
        <Notice kind={message.kind}>
          {message.text}
          {message.taskId && (
            <>
              {' '}
              <a href={paths.task(message.taskId)}>See the job</a>.
            </>
          )}
        </Notice>
      )}
      <div id="aoa-live" data-live-region>
        <div class="grid two">
          <section class="card" aria-labelledby="state-heading">
            <h2 id="state-heading">Legacy DCL state</h2>
            {state.ok ? (
              <>
                <p class="muted">Answered with status {state.status}.</p>
                <pre class="json" tabindex={0}>
                  {prettyJson(state.body)}
                </pre>
              </>
            ) : (
              <Notice kind="error">{state.message}</Notice>
            )}
          </section>
          <section class="card" aria-labelledby="active-heading">
            <h2 id="active-heading">Active job</h2>
            {active ? (
              <>
                <p>
                  <a href={paths.task(active.job.id)}>{jobLabel(active.job)}</a> <StatusBadge status={active.job.status} />
                  <span class="muted"> · created {formatTime(active.job.created_at)}</span>
                  {active.job.started_at && <span class="muted"> · running for {between(active.job.started_at, null, now)}</span>}
                </p>
                <Progress job={active.job} />
                <ol class="timeline compact">
                  {active.logs.map((log) => (
                    <li>
                      <time datetime={log.timestamp}>{formatTime(log.timestamp)}</time>
                      <p>{log.message}</p>
                    </li>
                  ))}
                </ol>
              </>
            ) : (
              <p class="muted">No job is queued or running.</p>
            )}
          </section>
        </div>
        {canRun && (
          <section class="card" aria-labelledby="run-heading">
            <h2 id="run-heading">Start a job</h2>
            {active && (
              <Notice kind="info">
                A job is already {active.job.status === 'queued' ? 'queued' : 'running'}: a new one is refused until it finishes.
              </Notice>
            )}
            <div class="button-row">
              <ActionButton action={`${paths.aoa}/run`} csrf={frame.csrf} label="Run" variant="primary" />
              <ActionButton action={`${paths.aoa}/reset`} csrf={frame.csrf} label="Reset" />
              <ActionButton action={`${paths.aoa}/prod-mode`} csrf={frame.csrf} label="Production mode on" fields={{ enabled: 'true' }} />
              <ActionButton action={`${paths.aoa}/prod-mode`} csrf={frame.csrf} label="Production mode off" fields={{ enabled: 'false' }} />
            </div>
          </section>
        )}
        <p>
          <a href={`${paths.tasks}?kind=aoa`}>All AOA jobs</a>
        </p>
      </div>
    </Layout>
  );
};

/** The AOA page: the DCL state, the active job, and the buttons that start one (members and above). */
export function aoaPages(kit: WebKit, services: { aoa: AoaService; tasks: TaskService }) {
  const { aoa, tasks } = services;
  const { signedIn } = kit.sessions;

  async function load(c: Context<SignedInEnv>): Promise<AoaView> {
    const auth = c.get('auth');
    const [state, job] = await Promise.all([
      aoa.state(auth, c.get('requestId')).then(
        (answer) => ({ ok: true as const, status: answer.status, body: answer.body }),
        (error: unknown) => {
          // The backend being away is what this page reports, not an error of the page.
          if (error instanceof AppError && typeof error.detail === 'string') return { ok: false as const, message: error.detail };
          throw error;
        },
      ),
      aoa.active(auth),
    ]);
    const active = job ? { job, logs: await tasks.logs(auth, job.id) } : undefined;
    return { state, active };
  }

  const show = async (c: Context<SignedInEnv>, message?: Message, status: ContentfulStatusCode = 200) =>
    renderPage(c, <AoaPage frame={signedInFrame(kit, c)} view={await load(c)} canRun={roleAtLeast(c.get('auth').role, 'member')} message={message} />, status);

  async function start(c: Context<SignedInEnv>, job: AoaJob) {
    try {
      const created = await aoa.enqueue(c.get('auth'), c.get('requestId'), job);
      return c.redirect(`${paths.aoa}?queued=${encodeURIComponent(created.id)}`, 303);
    } catch (error) {
      if (!(error instanceof AppError) || typeof error.detail !== 'string' || !['conflict', 'unavailable', 'too_many_requests'].includes(error.code)) throw error;
      const taskId = typeof error.extra.task_id === 'string' ? error.extra.task_id : undefined;
      const text = error.code === 'conflict' ? 'An AOA job is already running for your tenant; wait for it to finish, then try again.' : error.detail;
      return show(c, { kind: 'error', text, ...(taskId ? { taskId } : {}) }, error.status as ContentfulStatusCode);
    }
  }

  return new Hono<SignedInEnv>()
    .get('/aoa', signedIn('viewer'), (c) => {
      const queued = c.req.query('queued');
      return show(c, queued ? { kind: 'success', text: 'Job queued.', taskId: queued } : undefined);
    })
    .post('/aoa/run', signedIn('member'), (c) => start(c, { action: 'aoa_connect' }))
    .post('/aoa/reset', signedIn('member'), (c) => start(c, { action: 'aoa_reset' }))
    .post('/aoa/prod-mode', signedIn('member'), async (c) => {
      const enabled = (await readForm(c)).enabled;
      if (enabled !== 'true' && enabled !== 'false') return show(c, { kind: 'error', text: 'Choose production mode on or off.' }, 422);
      return start(c, { action: 'aoa_toggle_dev_mode', enabled: enabled === 'true' });
    });
}
