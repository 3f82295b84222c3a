import { sql, type CompiledQuery, type Kysely, type RawBuilder } from 'kysely';
import pg from 'pg';

/**
 * Marks a statement of ours to run prepared: put it first in the statement's text. Only the hot
 * statements whose text never changes shape carry it (creation, claims, successes): PostgreSQL
 * spends about as long parsing and planning each of them as running it, which a prepared
 * statement does once per connection. A text built per row count or per filter would fill the
 * connection with plans used once.
 */
export const PREPARED_MARKER = '/* prepared */';
export const prepared = sql.raw(PREPARED_MARKER);

/** Where a value goes in a statement compiled once (see compiledOnce). */
class StandIn {
  constructor(readonly position: number) {}
}

/**
 * A hot statement whose text never changes (one marked `prepared`), built and compiled by Kysely
 * for its first run only, then run with each call's values. `build` gets a stand-in for each of
 * its parameters, to use as a value of the statement. Building and compiling the creation
 * statement again for every batch cost the API 7-10% of its CPU per created task. The text is
 * compiled for the first database it runs on and used for every other: all of ours are the same
 * dialect (PostgreSQL) without plugins.
 */
export function compiledOnce<Row>(build: (...values: unknown[]) => RawBuilder<Row>) {
  let compiled: CompiledQuery<Row> | undefined;
  return async (db: Kysely<any>, ...values: unknown[]): Promise<Row[]> => {
    if (values.length !== build.length) throw new Error(`The statement takes ${build.length} values, not ${values.length}`);
    if (!compiled) {
      const standIns = values.map((_, position) => new StandIn(position));
      const candidate = build(...standIns).compile(db);
      if (standIns.some((standIn) => !candidate.parameters.includes(standIn))) throw new Error('Each value of a statement compiled once must be one of its parameters');
      compiled = candidate;
    }
    const parameters = compiled.parameters.map((parameter) => (parameter instanceof StandIn ? values[parameter.position] : parameter));
    return (await db.executeQuery<Row>({ ...compiled, parameters })).rows;
  };
}

/** A bound on the statements one process prepares, so the server's memory per connection stays bounded. */
const PREPARED_MAX_STATEMENTS = 64;

/**
 * A prepared statement the server no longer has as this connection knew it: its result type
 * changed under it (0A000, a migration added a column), or it is gone (26000: closed after a
 * value could not be sent, or deallocated).
 */
function isStale(error: unknown): boolean {
  const { code, message } = error as { code?: string; message?: string };
  return (code === '0A000' && message?.includes('cached plan must not change result type') === true) || code === '26000';
}

/**
 * Names the statements to prepare. A name stands for one text for the life of the process (pg
 * refuses a name reused for another text); a statement gone stale gets a new name, so every
 * connection prepares it afresh.
 */
class StatementNames {
  readonly #names = new Map<string, string>();
  #issued = 0;

  constructor(private readonly shouldPrepare: (text: string) => boolean) {}

  nameFor(text: string): string | undefined {
    const known = this.#names.get(text);
    if (known !== undefined || this.#names.size >= PREPARED_MAX_STATEMENTS || !this.shouldPrepare(text)) return known;
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
 * A pg client class that runs the statements `shouldPrepare` picks (among those with values: a
 * statement without them may hold several commands) as named prepared statements. Kysely and
 * pg-boss pass text and values to the pools made with it (createDb, createBoss); the name is added
 * here, so no query has to know. A statement found stale is prepared again under a new name; run
 * outside a transaction it is tried again at once (the server refused it before running it).
 * Turned off with DATABASE_PREPARED_STATEMENTS for a transaction-pooling proxy in front of the
 * database, which cannot keep them.
 */
export function preparingClientClass(shouldPrepare: (text: string) => boolean): typeof pg.Client {
  const names = new StatementNames(shouldPrepare);
  return class PreparingClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(config);
      const query = this.query.bind(this) as (...args: unknown[]) => unknown;
      this.query = ((config: unknown, values?: unknown, callback?: unknown) => {
        const name = typeof config === 'string' && Array.isArray(values) && values.length > 0 ? names.nameFor(config) : undefined;
        if (name === undefined) return query(config, values, callback);
        const text = config as string;
        const run = (statementName: string) => query({ name: statementName, text, values }) as Promise<unknown>;
        const result = run(name).catch((error: unknown) => {
          if (!isStale(error)) throw error;
          names.forget(text);
          if (this.getTransactionStatus() !== 'I') throw error;
          return run(names.nameFor(text)!);
        });
        if (typeof callback !== 'function') return result;
        result.then(
          (rows) => (callback as Callback)(null, rows),
          (error: Error) => (callback as Callback)(error),
        );
        return undefined;
      }) as pg.Client['query'];
    }
  };
}
