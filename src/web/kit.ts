import type { Context } from 'hono';
import type { DashboardAssets } from './assets.js';
import type { Frame } from './layout.js';
import type { Sessions, SignedInEnv, WebEnv } from './session.js';

/** What every page module of the dashboard is given besides its services. */
export interface WebKit {
  sessions: Sessions;
  assets: DashboardAssets;
  /** Whether the tenant settings pages are served (the nav links to them only then). */
  settings: boolean;
}

/** The frame of a page anyone may see (sign-in, register, errors). */
export function publicFrame(kit: WebKit, c: Context<WebEnv>): Frame {
  return { assets: kit.assets, csrf: c.get('csrf') };
}

/** The frame of a signed-in page: with the user, for the header and the nav. */
export function signedInFrame(kit: WebKit, c: Context<SignedInEnv>): Frame {
  return { assets: kit.assets, csrf: c.get('csrf'), user: c.get('user'), settings: kit.settings };
}
