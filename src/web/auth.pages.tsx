import { Hono, type Context } from 'hono';
import type { FC } from 'hono/jsx';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { LoginBody, RegisterBody } from '../auth/auth.schemas.js';
import type { AuthService, Registration } from '../auth/auth.service.js';
import { AppError } from '../errors.js';
import { InputField } from './fields.js';
import { errorsByField, formFields, noErrors, parseForm, safeReturnPath, type FormErrors } from './forms.js';
import { publicFrame, type WebKit } from './kit.js';
import { CsrfField, Layout, Notice, paths, renderPage, type Frame } from './layout.js';
import type { WebEnv } from './session.js';

const NOTICES: Record<string, string> = {
  expired: 'Your session has ended. Sign in again to continue.',
  signed_out: 'You are signed out.',
};

const GeneralErrors: FC<{ errors: FormErrors }> = ({ errors }) =>
  errors.general.length > 0 ? (
    <Notice kind="error">
      {errors.general.length === 1 ? errors.general[0] : (
        <ul>
          {errors.general.map((message) => (
            <li>{message}</li>
          ))}
        </ul>
      )}
    </Notice>
  ) : null;

const SignInPage: FC<{ frame: Frame; email?: string; next?: string; notice?: string; errors: FormErrors }> = ({ frame, email, next, notice, errors }) => (
  <Layout frame={frame} title="Sign in">
    <div class="auth-card">
      <h1>Sign in</h1>
      {notice && <Notice kind="info">{notice}</Notice>}
      <GeneralErrors errors={errors} />
      <form method="post" action={paths.login} novalidate>
        <CsrfField token={frame.csrf} />
        {next && <input type="hidden" name="next" value={next} />}
        <InputField id="email" name="email" label="Email" type="email" autocomplete="username" value={email} error={errors.fields.email} required />
        <InputField id="password" name="password" label="Password" type="password" autocomplete="current-password" error={errors.fields.password} required />
        <button type="submit" class="button primary wide">
          Sign in
        </button>
      </form>
      <p class="aside">
        New here? <a href={paths.register}>Register a new tenant</a>
      </p>
    </div>
  </Layout>
);

/** The email and new password of an account being made, on the register and join pages alike. */
const NewAccountFields: FC<{ values: Record<string, string>; errors: FormErrors }> = ({ values, errors }) => (
  <>
    <InputField id="email" name="email" label="Email" type="email" autocomplete="username" value={values.email} error={errors.fields.email} required />
    <InputField
      id="password"
      name="password"
      label="Password"
      type="password"
      autocomplete="new-password"
      hint="At least 8 characters."
      error={errors.fields.password}
      required
    />
  </>
);

const RegisterPage: FC<{ frame: Frame; values: Record<string, string>; errors: FormErrors }> = ({ frame, values, errors }) => (
  <Layout frame={frame} title="Register">
    <div class="auth-card">
      <h1>Register a new tenant</h1>
      <p class="lead">Your organisation gets a tenant of its own, and you become its owner.</p>
      <GeneralErrors errors={errors} />
      <form method="post" action={paths.register} novalidate>
        <CsrfField token={frame.csrf} />
        <InputField id="name" name="name" label="Organisation (tenant) name" autocomplete="organization" value={values.name} error={errors.fields.name} required />
        <NewAccountFields values={values} errors={errors} />
        <button type="submit" class="button primary wide">
          Register and sign in
        </button>
      </form>
      <p class="aside">
        Already registered? <a href={paths.login}>Sign in</a>
      </p>
    </div>
  </Layout>
);

const JoinPage: FC<{ frame: Frame; values: Record<string, string>; errors: FormErrors }> = ({ frame, values, errors }) => (
  <Layout frame={frame} title="Accept invitation">
    <div class="auth-card">
      <h1>Accept an invitation</h1>
      <p class="lead">Create your account with the email address the invitation was sent to.</p>
      <GeneralErrors errors={errors} />
      <form method="post" action={paths.join} novalidate>
        <CsrfField token={frame.csrf} />
        <InputField id="invite_token" name="invite_token" label="Invitation code" autocomplete="off" value={values.invite_token} error={errors.fields.invite_token} required />
        <NewAccountFields values={values} errors={errors} />
        <button type="submit" class="button primary wide">
          Join and sign in
        </button>
      </form>
      <p class="aside">
        Already have an account? <a href={paths.login}>Sign in</a>
      </p>
    </div>
  </Layout>
);

/** The status and message of a refused sign-in or registration that the form shows. */
function refusal(error: unknown): { status: ContentfulStatusCode; message: string } | undefined {
  if (!(error instanceof AppError) || typeof error.detail !== 'string') return undefined;
  if (error.code === 'unauthorized' || error.code === 'too_many_requests' || error.code === 'unavailable') {
    return { status: error.status as ContentfulStatusCode, message: error.detail };
  }
  return undefined;
}

/** The API's answer to a registration with an email that already has an account. */
const DUPLICATE_EMAIL = 'Email already registered';

const fieldOfLoc = (loc: (string | number)[]) => (typeof loc[0] === 'string' ? loc[0] : undefined);

/**
 * Sign in, register, sign out. Signing in is the API's login (the same attempt counting and
 * password hashing line, from the same client address); the token it issues becomes the session.
 */
export function authPages(kit: WebKit, auth: AuthService, clientAddress: (c: Context) => string) {
  const { sessions } = kit;

  /** Registers (a new tenant, or joining one by invitation), signs in, and goes to the tasks. */
  async function signUp(c: Context<WebEnv>, registration: Registration, again: (errors: FormErrors, status: ContentfulStatusCode) => Response | Promise<Response>) {
    try {
      await auth.register(registration);
      const { access_token: token } = await auth.login({ email: registration.email, password: registration.password, clientAddress: registration.clientAddress });
      sessions.start(c, token);
    } catch (error) {
      if (error instanceof AppError && error.code === 'bad_request' && typeof error.detail === 'string') {
        // Two refusals share the status: a registered email, and an invitation that is not valid for it.
        return again(error.detail === DUPLICATE_EMAIL ? { fields: { email: error.detail }, general: [] } : { fields: {}, general: [error.detail] }, 400);
      }
      if (error instanceof AppError && error.code === 'conflict') return again({ fields: { name: String(error.detail) }, general: [] }, 409);
      const refused = refusal(error);
      if (!refused) throw error;
      return again({ fields: {}, general: [refused.message] }, refused.status);
    }
    return c.redirect(paths.tasks, 303);
  }

  return new Hono<WebEnv>()
    .get('/login', (c) => {
      const notice = NOTICES[c.req.query('notice') ?? ''];
      const next = c.req.query('next');
      return renderPage(c, <SignInPage frame={publicFrame(kit, c)} {...(next ? { next } : {})} {...(notice ? { notice } : {})} errors={noErrors()} />);
    })
    .post('/login', async (c) => {
      const form = await formFields(c);
      const frame = publicFrame(kit, c);
      const again = (errors: FormErrors, status: ContentfulStatusCode) =>
        renderPage(c, <SignInPage frame={frame} email={form.email} next={form.next} errors={errors} />, status);
      const parsed = parseForm(LoginBody, { email: form.email ?? '', password: form.password ?? '' });
      if (!parsed.ok) return again(errorsByField(parsed.issues, fieldOfLoc), 422);
      try {
        const { access_token: token } = await auth.login({ ...parsed.value, clientAddress: clientAddress(c) });
        sessions.start(c, token);
      } catch (error) {
        const refused = refusal(error);
        if (!refused) throw error;
        return again({ fields: {}, general: [refused.message] }, refused.status);
      }
      return c.redirect(safeReturnPath(form.next, paths.tasks), 303);
    })
    .get('/register', (c) => renderPage(c, <RegisterPage frame={publicFrame(kit, c)} values={{}} errors={noErrors()} />))
    .post('/register', async (c) => {
      const form = await formFields(c);
      const again = (errors: FormErrors, status: ContentfulStatusCode) =>
        renderPage(c, <RegisterPage frame={publicFrame(kit, c)} values={form} errors={errors} />, status);
      const parsed = parseForm(RegisterBody, { name: form.name ?? '', email: form.email ?? '', password: form.password ?? '' });
      if (!parsed.ok) return again(errorsByField(parsed.issues, fieldOfLoc), 422);
      const { email, password } = parsed.value;
      const tenantName = ('name' in parsed.value ? parsed.value.name : undefined) ?? '';
      return signUp(c, { tenantName, email, password, clientAddress: clientAddress(c) }, again);
    })
    .get('/join', (c) => renderPage(c, <JoinPage frame={publicFrame(kit, c)} values={{ invite_token: c.req.query('token') ?? '' }} errors={noErrors()} />))
    .post('/join', async (c) => {
      const form = await formFields(c);
      const again = (errors: FormErrors, status: ContentfulStatusCode) =>
        renderPage(c, <JoinPage frame={publicFrame(kit, c)} values={form} errors={errors} />, status);
      const parsed = parseForm(RegisterBody, { invite_token: form.invite_token ?? '', email: form.email ?? '', password: form.password ?? '' });
      if (!parsed.ok) return again(errorsByField(parsed.issues, fieldOfLoc), 422);
      const { email, password } = parsed.value;
      const inviteToken = 'invite_token' in parsed.value ? (parsed.value.invite_token ?? '') : '';
      return signUp(c, { inviteToken, email, password, clientAddress: clientAddress(c) }, again);
    })
    .post('/logout', (c) => {
      // This browser forgets its session; POST /api/v1/auth/logout revokes every token of the user.
      sessions.end(c);
      return c.redirect(`${paths.login}?notice=signed_out`, 303);
    });
}
