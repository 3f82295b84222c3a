import assert from 'node:assert/strict';
import type { TestApp } from './app.js';

// A browser for the dashboard's HTML tests, without a browser: fetch with a cookie jar, manual
// redirects, and the form token read from the last page, as a browser would submit it.

export interface Page {
  status: number;
  headers: Headers;
  html: string;
  /** The redirect target, for a 3xx. */
  location: string | null;
}

/** The value of a form's hidden CSRF field in `html`. */
export function csrfTokenOf(html: string): string {
  const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
  assert.ok(token, 'the page has a form token');
  return token;
}

/** Text without tags and with entities decoded, whitespace collapsed: what a reader sees. */
export function visibleText(html: string): string {
  return html
    .replace(/<(script|style)[\s\S]*?<\/\1>/g, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .trim();
}

export class DashboardBrowser {
  readonly cookies = new Map<string, string>();
  /** The last page's HTML, whose form token the next post sends. */
  last = '';

  constructor(private readonly app: TestApp, private readonly headers: Record<string, string> = {}) {}

  private remember(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const index = pair!.indexOf('=');
      const name = pair!.slice(0, index);
      const value = pair!.slice(index + 1);
      if (value === '' || /max-age=0/i.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  private cookieHeader(): Record<string, string> {
    return this.cookies.size > 0 ? { Cookie: [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ') } : {};
  }

  async request(method: string, path: string, body?: URLSearchParams, headers: Record<string, string> = {}): Promise<Page> {
    const response = await fetch(`${this.app.url}${path}`, {
      method,
      redirect: 'manual',
      headers: { ...this.headers, ...this.cookieHeader(), ...headers, ...(body ? { 'Content-Type': 'application/x-www-form-urlencoded' } : {}) },
      body: body ?? null,
    });
    this.remember(response);
    const html = await response.text();
    if (response.status < 300 || response.status >= 400) this.last = html;
    return { status: response.status, headers: response.headers, html, location: response.headers.get('location') };
  }

  get(path: string): Promise<Page> {
    return this.request('GET', path);
  }

  /** Follows redirects (GET) to the final page. */
  async open(path: string): Promise<Page> {
    let page = await this.get(path);
    for (let hops = 0; page.location && hops < 5; hops += 1) page = await this.get(page.location);
    return page;
  }

  /** Posts a form as the last page would have: with its token, unless `token` says otherwise (null: none). */
  post(path: string, fields: Record<string, string> = {}, token: string | null = csrfTokenOf(this.last)): Promise<Page> {
    const body = new URLSearchParams(fields);
    if (token !== null) body.set('_csrf', token);
    return this.request('POST', path, body);
  }

  /** Signs in through the sign-in form. */
  async signIn(user: { email: string; password: string }): Promise<void> {
    await this.get('/app/login');
    const answer = await this.post('/app/login', { email: user.email, password: user.password });
    assert.equal(answer.status, 303, answer.html);
  }
}

/** A browser signed in as `user`. */
export async function signedInBrowser(app: TestApp, user: { email: string; password: string }): Promise<DashboardBrowser> {
  const browser = new DashboardBrowser(app);
  await browser.signIn(user);
  return browser;
}
