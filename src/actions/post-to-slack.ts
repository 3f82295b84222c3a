import * as v from 'valibot';
import { INVISIBLE_OR_CONTROL } from '../lib/text.js';
import { anyAddressAgent, OutboundTimeoutError, publicOnlyAgent, sendOutbound } from '../lib/outbound-http.js';
import { assertPublicHost, nonPublicCause } from '../lib/public-address.js';
import { ActionError, type Action, type TenantSlack } from './action.js';

/** Slack's answer is "ok" or a short error; nothing beyond this is read. */
const SLACK_ANSWER_BYTES = 4096;

/**
 * A Slack channel, as a task's payload or a tenant's Slack integration names it. Channels are
 * written into the audit trail: nothing in one may hide or forge text there.
 */
export function slackChannel(field: string) {
  return v.pipe(
    v.string(`${field} must be a string`),
    v.trim(),
    v.nonEmpty(`${field} is required`),
    v.maxLength(255, `${field} must be at most 255 characters`),
    v.check((channel) => !/\s/u.test(channel) && !INVISIBLE_OR_CONTROL.test(channel), `${field} must not contain whitespace, control or invisible characters`),
  );
}

const PostToSlackPayload = v.looseObject({
  action: v.literal('post_to_slack'),
  // Optional: a tenant whose Slack integration has a default_channel may leave it out. Without
  // either the task fails when it runs (a creation cannot know the integration it will run with).
  channel: v.optional(slackChannel('channel')),
  message: v.pipe(v.string('message must be a string'), v.nonEmpty('message is required'), v.maxLength(40_000)),
});

/**
 * The message as Slack's formatting rules ask for plain text: `&`, `<` and `>` escaped, so no
 * control sequence survives. `<!channel>`, `<!here>`, `<!everyone>`, `<!subteam^ID>` and
 * `<@USER>` would notify whole channels or groups on a tenant's behalf; they arrive as the text
 * they are. (Bare `@channel` is no mention in a webhook message: Slack links names only when asked.)
 */
export function neutraliseSlackMarkup(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Whether two names are the same channel: Slack names them without the leading `#`, in any case. */
export function sameChannel(a: string, b: string): boolean {
  const key = (channel: string) => channel.replace(/^#/, '').toLowerCase();
  return key(a) === key(b);
}

/** Where a post goes: the tenant's own webhook, or the operator's shared one. */
interface Destination {
  url: string;
  channel: string;
  /** Only the tenant's own webhook is a target it chose, and so guarded like a callback. */
  tenantChosen: boolean;
}

function tenantDestination(slack: TenantSlack, requested: string | undefined): Destination {
  const channel = requested ?? slack.defaultChannel;
  if (!channel) throw new ActionError("The task names no channel and the tenant's Slack integration has no default_channel");
  if (slack.allowedChannels && !slack.allowedChannels.some((allowed) => sameChannel(allowed, channel))) {
    throw new ActionError(`Channel ${channel} is not in the Slack integration's allowed_channels`);
  }
  return { url: slack.webhookUrl, channel, tenantChosen: true };
}

export const postToSlack: Action<v.InferOutput<typeof PostToSlackPayload>> = {
  name: 'post_to_slack',
  payloadSchema: PostToSlackPayload,
  async run(payload, { config, signal, audit, slack }) {
    let destination: Destination;
    const own = await slack();
    if (own) {
      destination = tenantDestination(own, payload.channel);
    } else {
      // A tenant with an integration never falls back to the shared webhook: its messages must not
      // land in the operator's Slack because its own setup broke (slack() throws then).
      if (!config.slackSharedWebhook) {
        throw new ActionError(
          'This tenant has no Slack integration and the shared Slack webhook is turned off (SLACK_SHARED_WEBHOOK=false): an admin can set one up with PUT /api/v1/tenant/integrations/slack',
        );
      }
      if (!config.slackWebhookUrl) throw new ActionError('SLACK_WEBHOOK_URL is not configured');
      if (!payload.channel) throw new ActionError('The task names no channel, and only a Slack integration of its own can give a default_channel');
      destination = { url: config.slackWebhookUrl, channel: payload.channel, tenantChosen: false };
    }
    const guarded = destination.tenantChosen && !config.callbackAllowPrivateNetworks;
    // A tenant's webhook URL is a credential: no message here may carry it, nor any error kept
    // as a cause (the HTTP client's own errors name the URL).
    const withoutUrl = (message: string) => message.split(destination.url).join('[webhook URL]');
    const causeOf = (error: unknown) => (destination.tenantChosen ? {} : { cause: error });

    await audit(`Attempting to post message to Slack channel ${destination.channel}`);
    let status: number;
    try {
      if (guarded) assertPublicHost(destination.url);
      ({ status } = await sendOutbound({
        method: 'POST',
        url: destination.url,
        json: { text: neutraliseSlackMarkup(payload.message), channel: destination.channel },
        timeoutMs: config.slackTimeoutSeconds * 1000,
        maxBodyBytes: SLACK_ANSWER_BYTES,
        signal,
        // The operator chose the shared URL, so it may be on a private network; a tenant's may not.
        agent: guarded ? publicOnlyAgent : anyAddressAgent,
      }));
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (nonPublicCause(error)) {
        throw new ActionError("The Slack webhook's host is not a public address (set CALLBACK_ALLOW_PRIVATE_NETWORKS=true to allow private targets)");
      }
      if (error instanceof OutboundTimeoutError) throw new ActionError(`Slack did not answer within ${config.slackTimeoutSeconds} s`, causeOf(error));
      throw new ActionError(`Could not reach Slack: ${withoutUrl((error as Error).message)}`, causeOf(error));
    }
    if (status < 200 || status >= 300) throw new ActionError(`Slack returned status ${status}`);
    return {
      result: { message: 'Successfully posted to Slack', channel: destination.channel, slack_response_status: status },
      audit: [`Successfully posted to Slack with status ${status}`],
    };
  },
};
