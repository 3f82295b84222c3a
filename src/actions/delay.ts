import * as v from 'valibot';
import type { Action } from './action.js';

const MAX_DELAY_ACTION_SECONDS = 86_400;

const DelayPayload = v.looseObject({
  action: v.literal('delay'),
  seconds: v.pipe(
    v.number('seconds must be an integer'),
    v.integer('seconds must be an integer'),
    v.minValue(1, `seconds must be between 1 and ${MAX_DELAY_ACTION_SECONDS}`),
    v.maxValue(MAX_DELAY_ACTION_SECONDS, `seconds must be between 1 and ${MAX_DELAY_ACTION_SECONDS}`),
  ),
});

/**
 * Succeeds `seconds` after it starts, e.g. as a step of a chain. The first run only asks to wait:
 * the worker then holds nothing (no slot, no connection) until the time comes, and the run that
 * follows succeeds. The wait spends no retry, and timeout_seconds bounds each run, not the wait.
 */
export const delay: Action<v.InferOutput<typeof DelayPayload>> = {
  name: 'delay',
  payloadSchema: DelayPayload,
  async run(payload, { waitedUntil }) {
    if (!waitedUntil) return { waitSeconds: payload.seconds };
    return {
      result: { seconds: payload.seconds, waited_until: waitedUntil.toISOString() },
      audit: [`Delay of ${payload.seconds} s finished`],
    };
  },
};
