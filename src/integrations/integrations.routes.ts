import { Hono } from 'hono';
import type { Authenticated } from '../auth/auth.middleware.js';
import { describeRoute } from '../http/openapi.js';
import type { AppEnv } from '../http/types.js';
import { jsonBody } from '../http/validation.js';
import { PutSlackIntegrationBody, SlackIntegrationOut, WebhookSecretOut } from './integrations.schemas.js';
import type { SlackIntegrations } from './slack-integration.js';
import type { WebhookSecrets } from './webhook-secrets.js';

const SLACK_PATH = '/api/v1/tenant/integrations/slack';
const notFound = { 404: { description: 'The tenant has no Slack integration' } };
const undecryptable = { 503: { description: 'The stored webhook URL cannot be decrypted with the configured ENCRYPTION_KEY or ENCRYPTION_KEY_PREVIOUS' } };

/** A tenant's own integrations and its callback signing secret; all of them need an admin. */
export function integrationRoutes(services: { slack: SlackIntegrations; webhookSecrets: WebhookSecrets }, authenticated: Authenticated) {
  const { slack, webhookSecrets } = services;
  return new Hono<AppEnv>()
    .get(
      SLACK_PATH,
      describeRoute({
        summary: "The tenant's Slack integration, its webhook URL masked",
        tags: ['integrations'],
        responses: { 200: { description: 'The integration', schema: SlackIntegrationOut }, ...notFound, ...undecryptable },
      }),
      authenticated('admin'),
      async (c) => c.json(await slack.get(c.get('auth'))),
    )
    .put(
      SLACK_PATH,
      describeRoute({
        summary: "Set the tenant's own Slack webhook",
        description:
          "Replaces the integration as a whole. `post_to_slack` tasks then post through this webhook instead of the operator's shared one; " +
          'a task without `channel` uses `default_channel`, and with `allowed_channels` any other channel fails the task. ' +
          'The URL is stored encrypted and never shown again in full.',
        tags: ['integrations'],
        responses: {
          200: { description: 'The integration as stored, its webhook URL masked', schema: SlackIntegrationOut },
          503: { description: 'The operator has not configured ENCRYPTION_KEY, so no integration can be stored' },
        },
      }),
      authenticated('admin'),
      jsonBody(PutSlackIntegrationBody),
      async (c) => c.json(await slack.put(c.get('auth'), c.req.valid('json'))),
    )
    .delete(
      SLACK_PATH,
      describeRoute({
        summary: "Remove the tenant's Slack integration",
        description: "`post_to_slack` tasks then use the operator's shared webhook again, if SLACK_SHARED_WEBHOOK allows.",
        tags: ['integrations'],
        responses: { 204: { description: 'Removed' }, ...notFound },
      }),
      authenticated('admin'),
      async (c) => {
        await slack.remove(c.get('auth'));
        return c.body(null, 204);
      },
    )
    .get(
      '/api/v1/tenant/webhook-secret',
      describeRoute({
        summary: 'The secret that signs the tenant’s callbacks (Standard Webhooks)',
        description: 'Made on first use. Callbacks carry `webhook-id`, `webhook-timestamp` and `webhook-signature`; see the API guide, Callbacks.',
        tags: ['integrations'],
        responses: { 200: { description: 'The current secret', schema: WebhookSecretOut } },
      }),
      authenticated('admin'),
      async (c) => c.json(await webhookSecrets.get(c.get('auth'))),
    )
    .post(
      '/api/v1/tenant/webhook-secret/rotate',
      describeRoute({
        summary: 'Replace the callback signing secret',
        description: 'For 24 hours callbacks are signed with both the new and the replaced secret (two signatures), so receivers can switch over.',
        tags: ['integrations'],
        responses: { 200: { description: 'The new secret', schema: WebhookSecretOut } },
      }),
      authenticated('admin'),
      async (c) => c.json(await webhookSecrets.rotate(c.get('auth'))),
    );
}
