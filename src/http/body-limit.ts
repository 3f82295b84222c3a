import { bodyLimit } from 'hono/body-limit';
import { AppError } from '../errors.js';

/** Refuses a body over `maxBytes` with 413, whether it announces its length or not. */
export function limitBody(maxBytes: number, what = 'Request body') {
  return bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new AppError('payload_too_large', `${what} exceeds ${maxBytes} bytes`);
    },
  });
}
