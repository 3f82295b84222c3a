import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { AppError } from '../errors.js';
import type { AppEnv } from './types.js';

// Swagger UI and ReDoc are served from their npm packages, not from a CDN: the pages work
// offline and behind an egress firewall, and the browser runs exactly the versions in
// package-lock.json.

const ASSETS_PATH = '/docs/assets';
const JAVASCRIPT = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

/** The files the pages load from the packages, by the name they are served under. */
const PACKAGED = {
  'swagger-ui.css': { module: 'swagger-ui-dist/swagger-ui.css', type: CSS },
  'swagger-ui-bundle.js': { module: 'swagger-ui-dist/swagger-ui-bundle.js', type: JAVASCRIPT },
  'redoc.standalone.js': { module: 'redoc/bundles/redoc.standalone.js', type: JAVASCRIPT },
};

interface Asset {
  body: Uint8Array<ArrayBuffer>;
  type: string;
  /** Part of the URL the pages use, so an upgrade is never hidden by a cached old copy. */
  version: string;
}

function asset(body: Uint8Array<ArrayBuffer>, type: string): Asset {
  return { body, type, version: createHash('sha256').update(body).digest('base64url').slice(0, 16) };
}

let packaged: Map<string, Asset> | undefined;

/** The packaged files, read once per process: a missing package fails at start, not on a page view. */
function packagedAssets(): Map<string, Asset> {
  packaged ??= new Map(
    Object.entries(PACKAGED).map(([name, { module, type }]) => [name, asset(readFileSync(fileURLToPath(import.meta.resolve(module))), type)]),
  );
  return packaged;
}

/**
 * Swagger UI's start-up, served as a file so the page needs no inline script. No online
 * validator badge: it would hand the document's address to a third-party server.
 */
function swaggerInit(specUrl: string): string {
  return `window.ui = SwaggerUIBundle({ url: ${JSON.stringify(specUrl)}, dom_id: '#swagger-ui', validatorUrl: null });\n`;
}

/** /docs (Swagger UI) and /redoc (ReDoc) for the document at `specUrl`, and the files they load. */
export function apiDocsRoutes(specUrl: string) {
  const assets = new Map(packagedAssets());
  assets.set('swagger-init.js', asset(Buffer.from(swaggerInit(specUrl)), JAVASCRIPT));
  const url = (name: string) => `${ASSETS_PATH}/${name}?v=${assets.get(name)!.version}`;

  const swaggerUi = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>AutonomOS API - Swagger UI</title>
<link rel="stylesheet" href="${url('swagger-ui.css')}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="${url('swagger-ui-bundle.js')}"></script>
<script src="${url('swagger-init.js')}"></script>
</body>
</html>
`;
  const redoc = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>AutonomOS API - ReDoc</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
<redoc spec-url="${specUrl}"></redoc>
<script src="${url('redoc.standalone.js')}"></script>
</body>
</html>
`;

  return new Hono<AppEnv>()
    .get('/docs', (c) => c.html(swaggerUi))
    .get('/redoc', (c) => c.html(redoc))
    .get(`${ASSETS_PATH}/:file`, (c) => {
      const found = assets.get(c.req.param('file'));
      if (!found) throw new AppError('not_found', 'Not Found');
      // Every URL names its content's version, so a copy may be kept for good.
      return c.body(found.body, 200, { 'Content-Type': found.type, 'Cache-Control': 'public, max-age=31536000, immutable' });
    });
}
