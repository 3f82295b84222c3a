import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Hono } from 'hono';
import { AppError } from '../errors.js';
import type { AppEnv } from '../http/types.js';

// The dashboard's own files, served by us (no CDN): one stylesheet, one small script and an icon.
// They sit beside this module as plain files, which `npm run build` copies next to the compiled
// module; they are read once per process, so a missing one fails at start, not on a page view.

const TYPES: Record<string, string> = {
  'dashboard.css': 'text/css; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};

interface Asset {
  body: Buffer;
  type: string;
  /** Part of the URL the pages use, so a new version is never hidden by a cached old copy. */
  version: string;
}

export interface DashboardAssets {
  /** The versioned URL of a file, for the pages. */
  url(name: keyof typeof TYPES & string): string;
  routes: Hono<AppEnv>;
}

/**
 * The files under `${base}/assets/`. `extraCss` is appended to the stylesheet: rules made from
 * what this process knows (the actions' names), so the file on disk stays free of them.
 */
export function dashboardAssets(base: string, extraCss: string): DashboardAssets {
  const assets = new Map<string, Asset>();
  for (const [name, type] of Object.entries(TYPES)) {
    let body = readFileSync(new URL(`./assets/${name}`, import.meta.url));
    if (name === 'dashboard.css') body = Buffer.concat([body, Buffer.from(extraCss)]);
    assets.set(name, { body, type, version: createHash('sha256').update(body).digest('base64url').slice(0, 16) });
  }
  const routes = new Hono<AppEnv>().get('/assets/:file', (c) => {
    const found = assets.get(c.req.param('file'));
    if (!found) throw new AppError('not_found', 'Not Found');
    // Every URL names its content's version, so a copy may be kept for good.
    return c.body(new Uint8Array(found.body), 200, { 'Content-Type': found.type, 'Cache-Control': 'public, max-age=31536000, immutable' });
  });
  return {
    url: (name) => `${base}/assets/${name}?v=${assets.get(name)!.version}`,
    routes,
  };
}
