import * as v from 'valibot';
import { INVISIBLE_OR_CONTROL } from '../lib/text.js';
import { anyAddressAgent, OutboundTimeoutError, sendOutbound } from '../lib/outbound-http.js';
import { ActionError, type Action } from './action.js';

/** Slack's answer is "ok" or a short error; nothing beyond this is read. */
const SLACK_ANSWER_BYTES = 4096;

const PostToSlackPayload = v.looseObject({
  action: v.literal('post_to_slack'),
  // The channel is written into the audit trail: nothing in it may hide or forge text there.
  channel: v.pipe(
    v.string('channel must be a string'),
    v.trim(),
    v.nonEmpty('channel is required'),
    v.maxLength(255),
    v.check((channel) => !/\s/u.test(channel) && !INVISIBLE_OR_CONTROL.test(channel), 'channel must not contain whitespace, control or invisible characters'),
  ),
  message: v.pipe(v.string('message must be a string'), v.nonEmpty('message is required'), v.maxLength(40_000)),
});

export const postToSlack: Action<v.InferOutput<typeof PostToSlackPayload>> = {
  name: 'post_to_slack',
  payloadSchema: PostToSlackPayload,
  async run(payload, { config, signal, audit }) {
    if (!config.slackWebhookUrl) throw new ActionError('SLACK_WEBHOOK_URL is not configured');
    await audit(`Attempting to post message to Slack channel ${payload.channel}`);
    let status: number;
    try {
      ({ status } = await sendOutbound({
        method: 'POST',
        url: config.slackWebhookUrl,
        json: { text: payload.message, channel: payload.channel },
        timeoutMs: config.slackTimeoutSeconds * 1000,
        maxBodyBytes: SLACK_ANSWER_BYTES,
        signal,
        // The operator chose this URL, so it may be on a private network.
        agent: anyAddressAgent,
      }));
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (error instanceof OutboundTimeoutError) throw new ActionError(`Slack did not answer within ${config.slackTimeoutSeconds} s`, { cause: error });
      throw new ActionError(`Could not reach Slack: ${(error as Error).message}`, { cause: error });
    }
    if (status < 200 || status >= 300) throw new ActionError(`Slack returned status ${status}`);
    return {
      result: { message: 'Successfully posted to Slack', channel: payload.channel, slack_response_status: status },
      audit: [`Successfully posted to Slack with status ${status}`],
    };
  },
};
