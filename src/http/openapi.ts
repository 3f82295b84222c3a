import { toJsonSchema } from '@valibot/to-json-schema';
import type { Hono, MiddlewareHandler } from 'hono';
import type { GenericSchema } from 'valibot';
import type { AppEnv } from './types.js';

const OPENAPI = Symbol('openapi');

export interface ResponseDoc {
  description: string;
  schema?: GenericSchema;
}

/** Everything a route contributes to the OpenAPI document; merged across its middleware. */
export interface OperationDoc {
  summary?: string;
  description?: string;
  tags?: string[];
  operationId?: string;
  security?: 'bearer';
  requestBody?: { contentType: string; schema: GenericSchema };
  parameters?: { name: string; in: 'path' | 'query' | 'header'; description: string; schema: object; required?: boolean }[];
  responses?: Record<number, ResponseDoc>;
}

type Documented = { [OPENAPI]?: OperationDoc };

/** Attaches OpenAPI metadata to a middleware so the document is derived from the routes themselves. */
export function withDoc<T extends object>(handler: T, doc: OperationDoc): T {
  (handler as T & Documented)[OPENAPI] = doc;
  return handler;
}

/** A pass-through middleware that only carries documentation. */
export function describeRoute(doc: OperationDoc): MiddlewareHandler<AppEnv> {
  return withDoc(async function describedRoute(_c, next) {
    await next();
  }, doc);
}

const ERROR_SCHEMA = {
  type: 'object',
  properties: {
    detail: {
      oneOf: [
        { type: 'string' },
        {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              loc: { type: 'array', items: { oneOf: [{ type: 'string' }, { type: 'integer' }] } },
              msg: { type: 'string' },
              type: { type: 'string' },
            },
            required: ['loc', 'msg', 'type'],
          },
        },
      ],
    },
  },
  required: ['detail'],
};

/**
 * A schema for the document. Recursive (lazy) schemas come with `$defs` and `#/$defs/…` refs,
 * which would resolve against the document root: they move to `components.schemas` instead.
 */
function jsonSchema(schema: GenericSchema, typeMode: 'ignore' | 'output', components: Record<string, unknown>) {
  const { $schema: _ignored, $defs, ...rest } = toJsonSchema(schema, {
    target: 'draft-2020-12',
    typeMode,
    errorMode: 'ignore',
  }) as Record<string, unknown>;
  if (!$defs) return rest;
  const hoist = (value: unknown) => JSON.parse(JSON.stringify(value).replaceAll('"#/$defs/', '"#/components/schemas/'));
  for (const [name, definition] of Object.entries($defs as Record<string, unknown>)) {
    const hoisted = hoist(definition);
    if (name in components && JSON.stringify(components[name]) !== JSON.stringify(hoisted)) {
      throw new Error(`Two different recursive schemas both define $defs/${name}`);
    }
    components[name] = hoisted;
  }
  return hoist(rest) as Record<string, unknown>;
}

function mergeDocs(into: OperationDoc, from: OperationDoc): OperationDoc {
  return {
    ...into,
    ...from,
    tags: [...(into.tags ?? []), ...(from.tags ?? [])],
    parameters: [...(into.parameters ?? []), ...(from.parameters ?? [])],
    responses: { ...into.responses, ...from.responses },
  };
}

/** Builds the OpenAPI 3.1 document from the documented middleware registered on the app. */
export function buildOpenApiDocument(app: Hono<any>, info: { title: string; version: string; description: string }) {
  const operations = new Map<string, { method: string; path: string; doc: OperationDoc }>();
  for (const route of app.routes) {
    const doc = (route.handler as Documented)[OPENAPI];
    if (!doc || route.method === 'ALL') continue;
    const key = `${route.method} ${route.path}`;
    const existing = operations.get(key);
    operations.set(key, {
      method: route.method.toLowerCase(),
      path: route.path,
      doc: existing ? mergeDocs(existing.doc, doc) : mergeDocs({}, doc),
    });
  }

  const paths: Record<string, Record<string, unknown>> = {};
  const schemas: Record<string, unknown> = {};
  for (const { method, path, doc } of operations.values()) {
    const openApiPath = path.replace(/:(\w+)/g, '{$1}');
    const responses: Record<string, unknown> = {};
    for (const [status, response] of Object.entries(doc.responses ?? {})) {
      const isError = Number(status) >= 400;
      const schema = response.schema ? jsonSchema(response.schema, 'output', schemas) : isError ? ERROR_SCHEMA : undefined;
      responses[status] = {
        description: response.description,
        ...(schema ? { content: { 'application/json': { schema } } } : {}),
      };
    }
    if (doc.requestBody) {
      responses['422'] ??= { description: 'Validation error', content: { 'application/json': { schema: ERROR_SCHEMA } } };
    }
    paths[openApiPath] ??= {};
    paths[openApiPath][method] = {
      ...(doc.summary ? { summary: doc.summary } : {}),
      ...(doc.description ? { description: doc.description } : {}),
      ...(doc.tags?.length ? { tags: [...new Set(doc.tags)] } : {}),
      operationId: doc.operationId ?? `${method}_${openApiPath.replace(/[^a-zA-Z0-9]+/g, '_').replace(/^_|_$/g, '')}`,
      ...(doc.parameters?.length ? { parameters: doc.parameters } : {}),
      ...(doc.requestBody
        ? {
            // Documented with every schema of its pipes merged ('ignore'), not just the first
            // ('input'): a pipe may start with a permissive pre-check (unknown, or a custom object
            // test) before the real shape, and 'input' would document that pre-check as {}.
            requestBody: {
              required: true,
              content: { [doc.requestBody.contentType]: { schema: jsonSchema(doc.requestBody.schema, 'ignore', schemas) } },
            },
          }
        : {}),
      responses,
      ...(doc.security === 'bearer' ? { security: [{ bearerAuth: [] }] } : {}),
    };
  }

  return {
    openapi: '3.1.0',
    info,
    paths,
    components: {
      ...(Object.keys(schemas).length ? { schemas } : {}),
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
      },
    },
  };
}

// The docs pages load pinned versions from a CDN, each with a Subresource Integrity hash (computed
// from the npm tarballs the CDN serves), so a tampered file is refused by the browser. Tokens are
// not persisted in the browser's storage.
export function swaggerUiHtml(specUrl: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>AutonomOS API - Swagger UI</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0/swagger-ui.css" integrity="sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I" crossorigin="anonymous">
</head>
<body>
<div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0/swagger-ui-bundle.js" integrity="sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9" crossorigin="anonymous"></script>
<script>
window.ui = SwaggerUIBundle({ url: ${JSON.stringify(specUrl)}, dom_id: '#swagger-ui' });
</script>
</body>
</html>
`;
}

export function redocHtml(specUrl: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>AutonomOS API - ReDoc</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
<redoc spec-url="${specUrl}"></redoc>
<script src="https://cdn.jsdelivr.net/npm/redoc@2.5.4/bundles/redoc.standalone.js" integrity="sha384-w447zOpYfw/1Tv/5AK9NfHTlQIqE3RVR6KY62jCyy9zNDgO64cMwGGP1Fj0zJVf5" crossorigin="anonymous"></script>
</body>
</html>
`;
}
