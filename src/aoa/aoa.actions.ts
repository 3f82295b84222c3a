import * as v from 'valibot';
import { ActionError, type Action, type ActionContext } from '../actions/action.js';
import { auditedBody, callDcl } from './dcl-client.js';

const STORED_BODY_BYTES = 64 * 1024;

const RequestId = v.optional(v.string(), 'unknown');

const ConnectPayload = v.looseObject({ action: v.literal('aoa_connect'), request_id: RequestId });
const ResetPayload = v.looseObject({ action: v.literal('aoa_reset'), request_id: RequestId });
const ToggleDevModePayload = v.looseObject({ action: v.literal('aoa_toggle_dev_mode'), enabled: v.boolean(), request_id: RequestId });

/** One Legacy DCL call as a task step: audited request and answer, non-2xx is a failure. */
async function runDclCall(
  context: ActionContext,
  call: { path: string; body?: unknown; requestId: string; label: string },
) {
  const target = `POST ${call.path}`;
  await context.audit(`Calling Legacy DCL ${target} for tenant ${context.tenantId}`);
  const response = await callDcl(context.config, {
    method: 'POST',
    path: call.path,
    tenantId: context.tenantId,
    requestId: call.requestId,
    body: call.body,
    signal: context.signal,
  });
  const answered = `Legacy DCL answered ${target} with status ${response.status}: ${auditedBody(response.text)}`;
  if (response.status < 200 || response.status >= 300) {
    await context.audit(answered);
    throw new ActionError(`Legacy DCL ${target} answered with status ${response.status}`);
  }
  return {
    result: {
      message: `${call.label} succeeded`,
      downstream_status: response.status,
      // A task result is no place for a huge body: beyond 64 KB only the audited excerpt is kept.
      response: Buffer.byteLength(response.text) <= STORED_BODY_BYTES ? (response.json ?? response.text) : auditedBody(response.text),
    },
    audit: [answered],
  };
}

export const aoaConnect: Action<v.InferOutput<typeof ConnectPayload>> = {
  name: 'aoa_connect',
  payloadSchema: ConnectPayload,
  run: (payload, context) => runDclCall(context, { path: '/connect', requestId: payload.request_id, label: 'AOA connect' }),
};

export const aoaReset: Action<v.InferOutput<typeof ResetPayload>> = {
  name: 'aoa_reset',
  payloadSchema: ResetPayload,
  run: (payload, context) => runDclCall(context, { path: '/reset', requestId: payload.request_id, label: 'AOA reset' }),
};

export const aoaToggleDevMode: Action<v.InferOutput<typeof ToggleDevModePayload>> = {
  name: 'aoa_toggle_dev_mode',
  payloadSchema: ToggleDevModePayload,
  run: (payload, context) =>
    runDclCall(context, {
      path: '/toggle_dev_mode',
      body: { enabled: payload.enabled },
      requestId: payload.request_id,
      label: 'AOA production mode toggle',
    }),
};

export const AOA_ACTIONS = [aoaConnect, aoaReset, aoaToggleDevMode] as const;
