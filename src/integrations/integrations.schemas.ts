import * as v from 'valibot';
import { sameChannel, slackChannel } from '../actions/post-to-slack.js';

/** A tenant may restrict its Slack posts to at most this many channels. */
export const MAX_ALLOWED_CHANNELS = 100;

const WebhookUrl = v.pipe(
  v.string('webhook_url must be a string'),
  v.trim(),
  v.nonEmpty('webhook_url is required'),
  v.maxLength(2048, 'webhook_url must be at most 2048 characters'),
  v.url('webhook_url must be an absolute URL'),
  // Which schemes and hosts are allowed depends on the configuration: see the Slack service.
  v.transform((value) => new URL(value).href),
);

/** PUT /api/v1/tenant/integrations/slack: the whole integration (a field left out is cleared). */
export const PutSlackIntegrationBody = v.pipe(
  v.strictObject(
    {
      webhook_url: WebhookUrl,
      default_channel: v.optional(v.nullable(slackChannel('default_channel')), null),
      allowed_channels: v.optional(
        v.nullable(
          v.pipe(
            v.array(slackChannel('each of allowed_channels'), 'allowed_channels must be a list of channels'),
            v.minLength(1, 'allowed_channels must name at least one channel (leave it out to allow any)'),
            v.maxLength(MAX_ALLOWED_CHANNELS, `allowed_channels must name at most ${MAX_ALLOWED_CHANNELS} channels`),
          ),
        ),
        null,
      ),
    },
    (issue) => (issue.expected === 'never' ? `Unknown field ${issue.received}` : `Missing field ${issue.expected}`),
  ),
  v.forward(
    v.check(
      ({ default_channel, allowed_channels }) =>
        !default_channel || !allowed_channels || allowed_channels.some((channel) => sameChannel(channel, default_channel)),
      'default_channel must be one of allowed_channels',
    ),
    ['default_channel'],
  ),
);

export type PutSlackIntegration = v.InferOutput<typeof PutSlackIntegrationBody>;

const Timestamp = v.pipe(v.string(), v.isoTimestamp());

export const SlackIntegrationOut = v.object({
  webhook_url: v.pipe(v.string(), v.description('The webhook URL masked: scheme, host and at most its last 4 characters')),
  default_channel: v.nullable(v.string()),
  allowed_channels: v.nullable(v.array(v.string())),
  created_at: Timestamp,
  updated_at: Timestamp,
});
export type SlackIntegrationOut = v.InferOutput<typeof SlackIntegrationOut>;

export const WebhookSecretOut = v.object({
  secret: v.pipe(v.string(), v.description('whsec_ and the base64 of the key that signs callbacks (Standard Webhooks)')),
  created_at: Timestamp,
  previous_secret_expires_at: v.pipe(
    v.nullable(Timestamp),
    v.description('Until then callbacks carry a second signature, made with the secret before the last rotation'),
  ),
});
export type WebhookSecretOut = v.InferOutput<typeof WebhookSecretOut>;
