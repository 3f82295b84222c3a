/** The name of the unique constraint a PostgreSQL error violated, if that is what it is. */
export function violatedUniqueConstraint(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, constraint } = error as { code?: unknown; constraint?: unknown };
  return code === '23505' && typeof constraint === 'string' ? constraint : undefined;
}

/** Whether a PostgreSQL error is lock_not_available (55P03): a lock waited longer than the statement's lock_timeout. */
export function isLockNotAvailable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '55P03';
}

/**
 * SQLSTATEs of text PostgreSQL cannot take as sent: 22021 character_not_in_repertoire (NUL in
 * text), 22P05 untranslatable_character (\u0000 in jsonb) and 22P02 invalid_text_representation
 * (a lone surrogate escape in jsonb). Every value reaching SQL has passed validation first, so
 * one of these means a client's text slipped past it.
 */
const REFUSED_TEXT_SQLSTATES = new Set(['22021', '22P05', '22P02']);

/** The SQLSTATE of a PostgreSQL error (or one it caused) refusing the text a statement carried, if that is what it is. */
export function refusedTextSqlstate(error: unknown, depth = 0): string | undefined {
  if (depth > 5 || typeof error !== 'object' || error === null) return undefined;
  const { code, cause } = error as { code?: unknown; cause?: unknown };
  if (typeof code === 'string' && REFUSED_TEXT_SQLSTATES.has(code)) return code;
  return refusedTextSqlstate(cause, depth + 1);
}
