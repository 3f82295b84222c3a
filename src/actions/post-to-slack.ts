import { FetchError, ofetch } from 'ofetch';
import * as v from 'valibot';
import { ActionError, type Action } from './action.js';

/** A Slack webhook that has not answered in this long is treated as down. */
const SLACK_REQUEST_TIMEOUT_MS = 30_000;

const PostToSlackPayload = v.looseObject({
  action: v.literal('post_to_slack'),
  channel: v.pipe(v.string('channel must be a string'), v.trim(), v.nonEmpty('channel is required'), v.maxLength(255)),
  message: v.pipe(v.string('message must be a string'), v.nonEmpty('message is required'), v.maxLength(40_000)),
});

export const postToSlack: Action<v.InferOutput<typeof PostToSlackPayload>> = {
  name: 'post_to_slack',
  payloadSchema: PostToSlackPayload,
  async run(payload, { config, signal, audit }) {
    if (!config.slackWebhookUrl) throw new ActionError('SLACK_WEBHOOK_URL is not configured');
    await audit(`Attempting to post message to Slack channel ${payload.channel}`);
    try {
      const response = await ofetch.raw(config.slackWebhookUrl, {
        method: 'POST',
        body: { text: payload.message, channel: payload.channel },
        signal: AbortSignal.any([signal, AbortSignal.timeout(SLACK_REQUEST_TIMEOUT_MS)]),
        retry: 0,
        responseType: 'text',
      });
      return {
        result: { message: 'Successfully posted to Slack', channel: payload.channel, slack_response_status: response.status },
        audit: [`Successfully posted to Slack with status ${response.status}`],
      };
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (error instanceof FetchError && error.statusCode) {
        throw new ActionError(`Slack returned status ${error.statusCode}`, { cause: error });
      }
      throw new ActionError(`Could not reach Slack: ${(error as Error).message}`, { cause: error });
    }
  },
};
