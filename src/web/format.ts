// How the dashboard writes times and durations. Times are UTC, as the API gives them: the server
// cannot know the reader's time zone, and one zone everywhere keeps the audit trail comparable.

/** `2030-01-01 12:00:00` (UTC) from an ISO timestamp; an em dash for none. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  return iso.slice(0, 19).replace('T', ' ');
}

/** `850 ms`, `2.3 s`, `4 min 12 s`, `3 h 5 min`, `2 d 4 h`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.floor(seconds % 60)} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** The time from one ISO timestamp to another (or to `now`), formatted; an em dash when it has not begun. */
export function between(from: string | null | undefined, to: string | null | undefined, now = Date.now()): string {
  if (!from) return '—';
  return formatDuration((to ? Date.parse(to) : now) - Date.parse(from));
}

/** `5 s`, `2 min`, `1 h` for a number of seconds from the configuration. */
export function formatSeconds(seconds: number): string {
  if (seconds < 60 || seconds % 60 !== 0) return `${seconds} s`;
  if (seconds < 3600 || seconds % 3600 !== 0) return `${seconds / 60} min`;
  return `${seconds / 3600} h`;
}

/** Pretty JSON for a <pre>. */
export function prettyJson(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

/** The first 8 characters of a UUID: enough to tell a tenant's tasks apart on a screen. */
export function shortId(id: string): string {
  return id.slice(0, 8);
}

/** The action a payload names, as the list shows it. */
export function actionOf(payload: Record<string, unknown>): string {
  return typeof payload.action === 'string' ? payload.action : '—';
}

/** A payload in a line: its texts and numbers after the action (`#ops · Deploy finished`), cut at `max` characters. */
export function summaryOf(payload: Record<string, unknown>, max = 80): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(payload)) {
    if (key === 'action') continue;
    if (typeof value === 'string') parts.push(value);
    else if (typeof value === 'number') parts.push(`${key} ${value}`);
  }
  const text = parts.join(' · ').replace(/\s+/g, ' ');
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
