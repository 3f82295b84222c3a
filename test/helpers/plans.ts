import { Kysely, PostgresDialect, type CompiledQuery } from 'kysely';
import pg from 'pg';
import type { Database } from '../../src/db/schema.js';

/** A plan node as EXPLAIN (ANALYZE, FORMAT JSON) gives it. */
export interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

/** The plan's nodes, the plan itself first. */
export const planNodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(planNodes)];

/**
 * A Kysely client on a connection of its own that keeps the statements it runs, so a test can
 * explain the service's own SQL with its parameters, as the service ran it. `explainLast` runs the
 * last statement again under EXPLAIN ANALYZE.
 */
export function explainingDb(databaseUrl: string) {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  const captured: CompiledQuery[] = [];
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => void (event.level === 'query' && captured.push(event.query)),
  });
  return {
    db,
    async explainLast(): Promise<{ plan: PlanNode; milliseconds: number }> {
      const { sql: text, parameters } = captured.at(-1)!;
      const { rows } = await pool.query(`explain (analyze, format json) ${text}`, [...parameters]);
      const [{ Plan: plan, 'Execution Time': milliseconds }] = rows[0]['QUERY PLAN'];
      return { plan: plan as PlanNode, milliseconds: milliseconds as number };
    },
    destroy: () => db.destroy(),
  };
}
