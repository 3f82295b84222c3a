import type { Hono, MiddlewareHandler } from 'hono';
import { describeRoute as describeOperation, openAPIRouteHandler, resolver, uniqueSymbol, type DescribeRouteOptions } from 'hono-openapi';
import * as v from 'valibot';
import type { AppEnv } from './types.js';

/** A response as routes declare it: what it means, and the valibot schema of its JSON body. */
export interface ResponseDoc {
  description: string;
  schema?: v.GenericSchema;
}

/** A path, query or header parameter; its schema is written as JSON Schema. */
export interface ParameterDoc {
  name: string;
  in: 'path' | 'query' | 'header';
  description: string;
  schema: object;
  required?: boolean;
}

/**
 * What a route or one of its middleware contributes to the route's operation: what hono-openapi
 * takes, but with responses in the shorthand above. hono-openapi merges the contributions of
 * every handler of a route.
 */
export type OperationDoc = Omit<DescribeRouteOptions, 'responses' | 'parameters'> & {
  parameters?: ParameterDoc[];
  responses?: Record<number, ResponseDoc>;
};

/** The security requirement of an operation that needs a bearer token; the scheme is in the document's components. */
export const BEARER_SECURITY = [{ bearerAuth: [] }];

/**
 * The body of every error answer: a message, or the 422 list of failing fields. Named, so the
 * document has it once under components.schemas.Error; loose, as some errors carry extra
 * fields (the blocking task_id of a conflict).
 */
const ErrorBody = v.pipe(
  v.looseObject({
    detail: v.union([
      v.string(),
      v.array(
        v.object({
          loc: v.array(v.union([v.string(), v.pipe(v.number(), v.integer())])),
          msg: v.string(),
          type: v.string(),
        }),
      ),
    ]),
  }),
  v.metadata({ ref: 'Error' }),
);

// Request bodies are documented with every schema of their pipes merged ('ignore'), not just the
// first ('input'): a pipe may start with a permissive pre-check (unknown, or a custom object test)
// before the real shape, and 'input' would document that pre-check as {}.
// A recursive (lazy) schema becomes a component named by a counter ("0"), and hono-openapi
// merges every route's components by name: a second, different recursive schema would
// overwrite the first one's (there is one today, a task and its chained task).
const REQUEST_SCHEMA = { options: { target: 'draft-2020-12', typeMode: 'ignore' } };
const RESPONSE_SCHEMA = { options: { target: 'draft-2020-12', typeMode: 'output' } };

/** A request body the document shows with the schema its validator checks. */
export function requestBodyDoc(contentType: string, schema: v.GenericSchema): OperationDoc['requestBody'] {
  return { required: true, content: { [contentType]: { schema: resolver(schema, REQUEST_SCHEMA) } } };
}

function toSpec({ responses, parameters, ...operation }: OperationDoc): DescribeRouteOptions {
  const spec: DescribeRouteOptions = operation;
  // Hand-written JSON Schema, taken as it is.
  if (parameters) spec.parameters = parameters as DescribeRouteOptions['parameters'];
  if (responses) {
    const documented = Object.entries(responses).map(([status, { description, schema }]) => {
      const body = schema ?? (Number(status) >= 400 ? ErrorBody : undefined);
      return [status, body ? { description, content: { 'application/json': { schema: resolver(body, RESPONSE_SCHEMA) } } } : { description }];
    });
    spec.responses = Object.fromEntries(documented);
  }
  return spec;
}

/** A pass-through middleware that documents the route it is on. */
export function describeRoute(doc: OperationDoc): MiddlewareHandler<AppEnv> {
  return describeOperation(toSpec(doc));
}

/**
 * Documents what a middleware adds to every route it is on (a body validator, the token check),
 * the way hono-openapi's own middleware carry their documentation.
 */
export function withDoc<T extends object>(handler: T, doc: OperationDoc): T {
  return Object.assign(handler, { [uniqueSymbol]: { spec: toSpec(doc) } });
}

/** Serves the OpenAPI 3.1 document of every documented route of the app, built on first request. */
export function openApiDocument(app: Hono<AppEnv>, info: { title: string; version: string; description: string }): MiddlewareHandler<AppEnv> {
  return openAPIRouteHandler(app, {
    documentation: {
      info,
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
  });
}
