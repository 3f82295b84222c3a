import type { Context } from 'hono';
import type { Child, FC, PropsWithChildren } from 'hono/jsx';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { UserOut } from '../auth/auth.schemas.js';
import { roleAtLeast, type Role } from '../http/types.js';
import type { DashboardAssets } from './assets.js';
import { CSRF_FIELD } from './csrf.js';
import { DASHBOARD_PATH } from './session.js';

/**
 * What every page's frame needs: the asset URLs, the form token and, once signed in, the user.
 * `settings`: whether the tenant settings pages exist in this build.
 */
export interface Frame {
  assets: DashboardAssets;
  csrf: string;
  user?: UserOut;
  settings?: boolean;
}

export type Section = 'tasks' | 'new' | 'aoa' | 'settings';

/** The dashboard's URLs, in one place. */
export const paths = {
  home: DASHBOARD_PATH,
  login: `${DASHBOARD_PATH}/login`,
  register: `${DASHBOARD_PATH}/register`,
  join: `${DASHBOARD_PATH}/join`,
  logout: `${DASHBOARD_PATH}/logout`,
  tasks: `${DASHBOARD_PATH}/tasks`,
  newTask: `${DASHBOARD_PATH}/tasks/new`,
  task: (id: string) => `${DASHBOARD_PATH}/tasks/${encodeURIComponent(id)}`,
  aoa: `${DASHBOARD_PATH}/aoa`,
  settings: `${DASHBOARD_PATH}/settings`,
  events: `${DASHBOARD_PATH}/events`,
};

/** The hidden field every state-changing form carries. */
export const CsrfField: FC<{ token: string }> = ({ token }) => <input type="hidden" name={CSRF_FIELD} value={token} />;

/**
 * A form that is one button (cancel, retry, sign out): POST with the token. `about` completes the
 * label for screen readers where the row around it says it visually ("Remove" ada@…).
 */
export const ActionButton: FC<{
  action: string;
  csrf: string;
  label: string;
  about?: string;
  variant?: 'primary' | 'danger' | 'plain';
  fields?: Record<string, string>;
}> = ({ action, csrf, label, about, variant = 'plain', fields = {} }) => (
  <form method="post" action={action} class="inline">
    <CsrfField token={csrf} />
    {Object.entries(fields).map(([name, value]) => (
      <input type="hidden" name={name} value={value} />
    ))}
    <button type="submit" class={`button ${variant}`}>
      {label}
      {about && <span class="visually-hidden"> {about}</span>}
    </button>
  </form>
);

const STATUS_LABELS: Record<string, string> = {
  queued: 'Queued',
  in_progress: 'Running',
  success: 'Succeeded',
  failed: 'Failed',
  canceled: 'Canceled',
};

/** A task status as a labelled pill: the word carries the meaning, the colour only repeats it. */
export const StatusBadge: FC<{ status: string }> = ({ status }) => (
  <span class={`badge status-${status}`} data-status={status}>
    {STATUS_LABELS[status] ?? status}
  </span>
);

export const statusLabel = (status: string) => STATUS_LABELS[status] ?? status;

/** A message above the page's content; errors are announced to screen readers at once. */
export const Notice: FC<PropsWithChildren<{ kind: 'info' | 'success' | 'error' }>> = ({ kind, children }) => (
  <div class={`notice ${kind}`} role={kind === 'error' ? 'alert' : 'status'}>
    {children}
  </div>
);

const NAV: { section: Section; label: string; href: string; needs: Role }[] = [
  { section: 'tasks', label: 'Tasks', href: paths.tasks, needs: 'viewer' },
  { section: 'new', label: 'New task', href: paths.newTask, needs: 'member' },
  { section: 'aoa', label: 'AOA', href: paths.aoa, needs: 'viewer' },
  { section: 'settings', label: 'Settings', href: paths.settings, needs: 'admin' },
];

/**
 * The frame of every page. `live` names what the page shows (`tasks`, `task:<id>`, `aoa`): the
 * script refreshes the page's live regions when an event about it arrives.
 */
export const Layout: FC<PropsWithChildren<{ frame: Frame; title: string; section?: Section; live?: string }>> = ({
  frame,
  title,
  section,
  live,
  children,
}) => {
  const user = frame.user;
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${title} · AutonomOS`}</title>
        <link rel="icon" href={frame.assets.url('favicon.svg')} type="image/svg+xml" />
        <link rel="stylesheet" href={frame.assets.url('dashboard.css')} />
        <script src={frame.assets.url('dashboard.js')} defer></script>
      </head>
      <body data-live={live} data-events={live ? paths.events : undefined}>
        <a class="skip-link" href="#main">
          Skip to content
        </a>
        <header class="topbar">
          <a class="brand" href={user ? paths.tasks : paths.login}>
            <span class="logo" aria-hidden="true"></span>AutonomOS
          </a>
          {user && (
            <nav aria-label="Main">
              <ul>
                {NAV.filter((item) => roleAtLeast(user.role, item.needs) && (item.section !== 'settings' || frame.settings)).map((item) => (
                  <li>
                    <a href={item.href} aria-current={item.section === section ? 'page' : undefined}>
                      {item.label}
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
          )}
          {user && (
            <div class="account">
              <span class="who">
                <span class="tenant">{user.tenant.name}</span>
                <span class="email">{user.email}</span>
                <span class="role">{user.role}</span>
              </span>
              <ActionButton action={paths.logout} csrf={frame.csrf} label="Sign out" />
            </div>
          )}
        </header>
        <main id="main" tabindex={-1}>
          {children}
        </main>
        <footer class="footer">
          <span>Times are UTC.</span>
          {live && (
            <span class="live-status" id="live-status" role="status">
              Live updates need JavaScript; reload to see changes.
            </span>
          )}
        </footer>
      </body>
    </html>
  );
};

/** Answers with a page: the doctype, then the rendered frame and content. */
export function renderPage(c: Context, page: Child, status: ContentfulStatusCode = 200) {
  return c.html(`<!doctype html>${String(page)}`, status);
}

/** A labelled field's error message, tied to its input by id (aria-describedby). */
export const FieldError: FC<{ id: string; message: string | undefined }> = ({ id, message }) =>
  message ? (
    <p class="field-error" id={`${id}-error`}>
      {message}
    </p>
  ) : null;
