import pg from 'pg';

/**
 * Statements this long are complex (the creation statement, the worker's claims and outcomes,
 * pg-boss's job inserts and completions): PostgreSQL spends about as long parsing and planning
 * each of them as running it, which a prepared statement does once per connection.
 */
const PREPARED_MIN_LENGTH = 400;
/** Distinct statements a process prepares, so the server's memory per connection stays bounded. */
const PREPARED_MAX_STATEMENTS = 64;

/** SQLSTATE 0A000 with this message: a prepared statement whose result columns a migration changed. */
const STALE_PLAN_MESSAGE = 'cached plan must not change result type';

/**
 * Names the statements worth preparing. A name stands for one text for the life of the process
 * (pg refuses a name reused for another text); a statement gone stale gets a new name, so every
 * connection prepares it afresh.
 */
class StatementNames {
  readonly #names = new Map<string, string>();
  #issued = 0;

  nameFor(text: string): string | undefined {
    const known = this.#names.get(text);
    if (known !== undefined || text.length < PREPARED_MIN_LENGTH || this.#names.size >= PREPARED_MAX_STATEMENTS) return known;
    return this.#rename(text);
  }

  forget(text: string): void {
    if (this.#names.has(text)) this.#rename(text);
  }

  #rename(text: string): string {
    const name = `autonomos_${++this.#issued}`;
    this.#names.set(text, name);
    return name;
  }
}

type Callback = (error: Error | null, result?: unknown) => void;

/**
 * A pg client class that runs the long parameterised statements as named prepared statements.
 * Kysely and pg-boss pass text and values to the pools made with it (createDb, createBoss); the
 * name is added here, so no query has to know. Turned off with DATABASE_PREPARED_STATEMENTS
 * for a transaction-pooling proxy in front of the database, which cannot keep them.
 */
export function preparingClientClass(): typeof pg.Client {
  const names = new StatementNames();
  return class PreparingClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(config);
      const query = this.query.bind(this) as (...args: unknown[]) => unknown;
      this.query = ((config: unknown, values?: unknown, callback?: unknown) => {
        // With values only: a statement without them may hold several commands, which cannot be prepared.
        const name = typeof config === 'string' && Array.isArray(values) && values.length > 0 ? names.nameFor(config) : undefined;
        if (name === undefined) return query(config, values, callback);
        const text = config as string;
        const staleness = (error: unknown) => {
          if (error instanceof Error && (error as { code?: string }).code === '0A000' && error.message.includes(STALE_PLAN_MESSAGE)) names.forget(text);
        };
        if (typeof callback === 'function') {
          return query({ name, text, values }, (error: Error | null, result?: unknown) => {
            if (error) staleness(error);
            (callback as Callback)(error, result);
          });
        }
        return (query({ name, text, values }) as Promise<unknown>).catch((error: unknown) => {
          staleness(error);
          throw error;
        });
      }) as pg.Client['query'];
    }
  };
}
