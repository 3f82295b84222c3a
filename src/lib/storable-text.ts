/**
 * Why a string cannot be stored as sent: PostgreSQL refuses NUL in text and jsonb, and a lone
 * surrogate (half of a UTF-16 pair, e.g. from the JSON escape "\ud800") has no UTF-8 encoding:
 * jsonb refuses it and a text column would silently store U+FFFD instead.
 */
export function unstorableTextReason(text: string): string | undefined {
  if (text.includes('\u0000')) return 'Text must not contain NUL (\\u0000) characters';
  if (/\p{Cs}/u.test(text)) return 'Text must be well-formed Unicode: a lone surrogate (\\ud800-\\udfff) is not a character';
  return undefined;
}

export interface UnstorableText {
  /** Keys and indexes from the root to the offending string; for an offending key, ending with that key. */
  path: (string | number)[];
  /** Whether the object key at the end of `path` is what is wrong, rather than the value there. */
  isKey: boolean;
  reason: string;
}

interface Pending {
  value: unknown;
  key: string | number | undefined;
  parent: Pending | undefined;
}

function pathOf(node: Pending): (string | number)[] {
  const path: (string | number)[] = [];
  for (let current: Pending | undefined = node; current?.key !== undefined; current = current.parent) path.push(current.key);
  return path.reverse();
}

/**
 * The first string value or object key, in document order, that PostgreSQL could not store as
 * sent. Iterative, and paths are rebuilt from parent links only on a find, so a body nested
 * hundreds of thousands of levels deep costs neither stack nor quadratic time.
 */
export function findUnstorableText(root: unknown): UnstorableText | undefined {
  const pending: Pending[] = [{ value: root, key: undefined, parent: undefined }];
  while (pending.length > 0) {
    const node = pending.pop()!;
    const { value } = node;
    if (typeof value === 'string') {
      const reason = unstorableTextReason(value);
      if (reason) return { path: pathOf(node), isKey: false, reason };
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    const entries: [string | number, unknown][] = Array.isArray(value) ? value.map((item, index) => [index, item]) : Object.entries(value);
    for (const [key] of entries) {
      const reason = typeof key === 'string' ? unstorableTextReason(key) : undefined;
      if (reason) return { path: [...pathOf(node), key], isKey: true, reason };
    }
    // Pushed last to first, so the first child is looked at first.
    for (let index = entries.length - 1; index >= 0; index--) {
      const [key, child] = entries[index]!;
      pending.push({ value: child, key, parent: node });
    }
  }
  return undefined;
}
