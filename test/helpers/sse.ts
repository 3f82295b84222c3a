import { eventually } from './poll.js';

// A Server-Sent Events client for the tests: fetch, and a parser for the event stream format
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).

export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

export interface SseStream {
  status: number;
  headers: Headers;
  /** The body of a refusal (anything but 200). */
  text: string;
  /** Every event so far, in order. */
  events: SseEvent[];
  /** Every comment line so far, with when it arrived (performance.now()). */
  comments: { text: string; at: number }[];
  /** Whether the server has ended the stream. */
  ended: boolean;
  /** Polls until at least `count` events arrived; returns the first `count`. */
  waitForEvents(count: number, timeoutMs?: number): Promise<SseEvent[]>;
  /** Polls until an event matches; returns it. */
  waitForEvent(match: (event: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  /** Polls until the server has ended the stream. */
  waitForEnd(timeoutMs?: number): Promise<void>;
  /** Hangs up. */
  close(): void;
}

/** The events about one task (their data is the task, or `{"id": …}`). */
export function eventsOfTask(events: readonly SseEvent[], taskId: string): SseEvent[] {
  return events.filter((event) => JSON.parse(event.data).id === taskId);
}

/** Waits until the stream has the task's event of type `last`; returns the task's events so far. */
export async function waitForTaskEvents(stream: SseStream, taskId: string, last: string): Promise<SseEvent[]> {
  await stream.waitForEvent((event) => event.event === last && JSON.parse(event.data).id === taskId);
  return eventsOfTask(stream.events, taskId);
}

/** Opens `url` as an event stream, with the bearer `token` and, if given, a Last-Event-ID. */
export async function openEventStream(url: string, options: { token?: string; lastEventId?: string } = {}): Promise<SseStream> {
  const headers: Record<string, string> = { Accept: 'text/event-stream' };
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  if (options.lastEventId !== undefined) headers['Last-Event-ID'] = options.lastEventId;
  const abort = new AbortController();
  const response = await fetch(url, { headers, signal: abort.signal });
  const stream: SseStream = {
    status: response.status,
    headers: response.headers,
    text: '',
    events: [],
    comments: [],
    ended: false,
    waitForEvents: (count, timeoutMs = 10_000) =>
      eventually(() => (stream.events.length >= count ? stream.events.slice(0, count) : undefined), {
        timeoutMs,
        intervalMs: 10,
        message: `${count} events (have ${JSON.stringify(stream.events.map((event) => event.event))})`,
      }),
    waitForEvent: (match, timeoutMs = 10_000) =>
      eventually(() => stream.events.find(match), { timeoutMs, intervalMs: 10, message: 'a matching event' }),
    waitForEnd: (timeoutMs = 10_000) =>
      eventually(() => (stream.ended ? true : undefined), { timeoutMs, intervalMs: 10, message: 'the end of the stream' }).then(() => {}),
    close: () => abort.abort(),
  };
  if (response.status !== 200) {
    stream.text = await response.text();
    stream.ended = true;
    return stream;
  }
  void read(response.body!, stream);
  return stream;
}

async function read(body: ReadableStream<Uint8Array>, stream: SseStream): Promise<void> {
  const decoder = new TextDecoder();
  let buffer = '';
  let fields: { id?: string; event?: string; data: string[] } = { data: [] };
  try {
    for await (const chunk of body) {
      buffer += decoder.decode(chunk, { stream: true });
      for (let end = buffer.search(/\r\n|\r|\n/); end >= 0; end = buffer.search(/\r\n|\r|\n/)) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(buffer.startsWith('\r\n', end) ? end + 2 : end + 1);
        if (line === '') {
          if (fields.data.length > 0 || fields.event !== undefined) {
            stream.events.push({ id: fields.id, event: fields.event ?? 'message', data: fields.data.join('\n') });
          }
          fields = { data: [] };
        } else if (line.startsWith(':')) {
          stream.comments.push({ text: line.slice(1).trim(), at: performance.now() });
        } else {
          const colon = line.indexOf(':');
          const name = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (name === 'data') fields.data.push(value);
          else if (name === 'event') fields.event = value;
          else if (name === 'id') fields.id = value;
        }
      }
    }
  } catch {
    // Hung up by close(), or the connection dropped: either way the stream is over.
  } finally {
    stream.ended = true;
  }
}
