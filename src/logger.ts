type Level = 'debug' | 'info' | 'warn' | 'error';

const LEVEL_RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Keys whose values never reach a log line, whatever object they appear in. */
const REDACTED_KEY = /pass(word)?|secret|token|authorization|cookie|hash/i;

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

function redact(value: unknown, depth = 0): unknown {
  if (value instanceof Error) {
    return {
      name: value.name,
      message: value.message,
      // Stacks carry file names and lines, never values: the one clue to an unexpected error.
      ...(value.stack ? { stack: value.stack } : {}),
      ...(value.cause !== undefined && depth < 4 ? { cause: redact(value.cause, depth + 1) } : {}),
    };
  }
  if (value === null || typeof value !== 'object' || depth > 4) return value;
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  const copy: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    copy[key] = REDACTED_KEY.test(key) ? '[redacted]' : redact(item, depth + 1);
  }
  return copy;
}

/** One JSON line per event on stdout; secrets are redacted by key name. */
export function createLogger(
  options: { level?: Level; base?: LogFields; write?: (line: string) => void } = {},
): Logger {
  const threshold = LEVEL_RANK[options.level ?? 'info'];
  const base = options.base ?? {};
  const write = options.write ?? ((line: string) => process.stdout.write(line));
  const emit = (level: Level, msg: string, fields?: LogFields) => {
    if (LEVEL_RANK[level] < threshold) return;
    const record = { time: new Date().toISOString(), level, msg, ...base, ...fields };
    write(`${JSON.stringify(redact(record))}\n`);
  };
  return {
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    child: (fields) => createLogger({ ...options, base: { ...base, ...fields } }),
  };
}

/** A logger that drops everything: for tests that do not read logs. */
export const silentLogger: Logger = createLogger({ write: () => {} });
