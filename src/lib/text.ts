/**
 * Format characters (Cf: zero-width spaces, bidi overrides, byte order marks) and control
 * characters (Cc) other than whitespace: what can hide text or make it read other than it is.
 */
export const INVISIBLE_OR_CONTROL = /\p{Cf}|(?![\t\n\v\f\r])\p{Cc}/u;

const UNPRINTABLE = /[\p{Cc}\p{Cf}]/gu;

/**
 * Text from outside (an error a server sent, a URL) made safe for one line of the audit trail:
 * every control and format character, newlines included, is written as an escape (`\u{202e}`),
 * so it can neither start a forged line nor hide or reorder what follows.
 */
export function escapeUnprintable(text: string): string {
  return text.replace(UNPRINTABLE, (character) => `\\u{${character.codePointAt(0)!.toString(16)}}`);
}
