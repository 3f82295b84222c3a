// AutonomOS dashboard: live updates, as progressive enhancement. Every page works without this
// script; with it, a page that shows tasks (<body data-live>) listens to the tenant's event
// stream and, when an event concerns what the page shows, fetches the page again and swaps in
// its live regions ([data-live-region]). The server renders every state: this file never builds
// markup, so the page looks the same whether it was loaded or refreshed live.
(function () {
  'use strict';

  var body = document.body;
  var live = body.getAttribute('data-live');
  var eventsUrl = body.getAttribute('data-events');
  if (!live || !eventsUrl || !window.EventSource || !window.fetch || !window.DOMParser) return;

  var EVENT_TYPES = ['task.created', 'task.started', 'task.succeeded', 'task.failed', 'task.retry_scheduled', 'task.canceled', 'task.deleted'];
  /** At most one refresh this often: a burst of events becomes one fetch. */
  var REFRESH_GAP_MS = 250;

  var statusLine = document.getElementById('live-status');
  function say(text) {
    if (statusLine && statusLine.textContent !== text) statusLine.textContent = text;
  }

  /**
   * Chained tasks learnt from events (a shown task's next_task_id) before a refresh has rendered
   * them: a chained task's own events can arrive while that refresh is still on its way, and
   * must not be passed over as another task's.
   */
  var chainedSinceRender = [];

  /** The ids of the tasks a task page shows (the task and its chain), from the rendered page and its events. */
  function shownTaskIds() {
    var ids = [live.slice('task:'.length)].concat(chainedSinceRender);
    var detail = document.getElementById('task-detail');
    var chain = detail && detail.getAttribute('data-chain');
    return chain ? ids.concat(chain.split(' ')) : ids;
  }

  /** Whether an event about `task` changes what this page shows. */
  function concerns(task) {
    if (live === 'tasks') return true;
    // A deleted task's event names only its id: refreshing costs little and is always right.
    if (live === 'aoa') return task.kind === 'aoa' || task.kind === undefined;
    if (live.indexOf('task:') === 0) {
      var ids = shownTaskIds();
      return ids.indexOf(task.id) >= 0 || (task.retry_of && ids.indexOf(task.retry_of) >= 0);
    }
    return false;
  }

  /** What identifies the focused element across a refresh: its id, its link, or its form and label. */
  function focusKey(element) {
    if (!element || element === document.body) return null;
    if (element.id) return { id: element.id };
    if (element.tagName === 'A') return { href: element.getAttribute('href') };
    if (element.form) return { action: element.form.getAttribute('action'), text: element.textContent };
    return null;
  }

  function findByKey(key) {
    if (key.id) return document.getElementById(key.id);
    var candidates = document.querySelectorAll(key.href ? 'a[href]' : 'form[action] button');
    for (var index = 0; index < candidates.length; index += 1) {
      var candidate = candidates[index];
      if (key.href && candidate.getAttribute('href') === key.href) return candidate;
      if (key.action && candidate.form && candidate.form.getAttribute('action') === key.action && candidate.textContent === key.text) return candidate;
    }
    return null;
  }

  /** Swaps in the fresh page's live regions; whoever had the focus inside one keeps it. */
  function swap(fresh) {
    var focused = document.activeElement;
    var key = focusKey(focused);
    var regions = document.querySelectorAll('[data-live-region]');
    for (var index = 0; index < regions.length; index += 1) {
      var region = regions[index];
      var replacement = fresh.getElementById(region.id);
      if (replacement && replacement.innerHTML !== region.innerHTML) region.replaceWith(document.importNode(replacement, true));
    }
    if (key && focused && !document.body.contains(focused)) {
      var again = findByKey(key);
      if (again) again.focus({ preventScroll: true });
    }
  }

  var LIVE = 'Live: changes appear as they happen.';
  var STOPPED = 'Live updates stopped. Reload the page to see changes.';
  /**
   * After a failure (the server busy, restarting or unreachable), the next try waits this long,
   * then longer: a moment's 503 must not end a page's live updates for good.
   */
  var RETRY_DELAYS_MS = [500, 1000, 2000, 5000, 10000];
  /** Failures in a row, of the page's reads and of the stream's openings (each counts its own). */
  var failures = { read: 0, stream: 0 };
  var ended = false;
  var source = null;

  function retryDelay(kind) {
    var delay = RETRY_DELAYS_MS[Math.min(failures[kind], RETRY_DELAYS_MS.length - 1)];
    failures[kind] += 1;
    return delay;
  }

  /** The page can no longer be shown (the session ended, the task is gone): its live updates stop. */
  function end() {
    ended = true;
    if (source) source.close();
    say(STOPPED);
  }

  var refreshing = false;
  var pending = false;
  var timer = null;
  /** A failed read's next try, while it waits: one at a time, whatever asks for reads meanwhile. */
  var retryTimer = null;

  function refresh() {
    if (ended) return;
    if (refreshing || retryTimer !== null) {
      pending = true;
      return;
    }
    refreshing = true;
    fetch(window.location.href, { credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (response) {
        // Sent to the sign-in page (the session ended), or refused for good (the task deleted, the
        // role taken away): this page can no longer be shown.
        if (response.redirected || (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429)) return 'ended';
        if (!response.ok) throw new Error('refresh answered ' + response.status);
        return response.text().then(function (html) {
          swap(new DOMParser().parseFromString(html, 'text/html'));
          return 'shown';
        });
      })
      .catch(function () {
        return 'failed';
      })
      .then(function (outcome) {
        refreshing = false;
        if (outcome === 'ended') return end();
        if (outcome === 'failed') {
          say('Reconnecting…');
          retryTimer = window.setTimeout(function () {
            retryTimer = null;
            pending = false;
            refresh();
          }, retryDelay('read'));
          return;
        }
        failures.read = 0;
        if (source && source.readyState === EventSource.OPEN) say(LIVE);
        if (pending) {
          pending = false;
          schedule();
        }
      });
  }

  function schedule() {
    if (timer === null && !ended) {
      timer = window.setTimeout(function () {
        timer = null;
        refresh();
      }, REFRESH_GAP_MS);
    }
  }

  function connect() {
    source = new EventSource(eventsUrl);
    source.onopen = function () {
      failures.stream = 0;
      say(LIVE);
      // What changed between the page's rendering (or the last connection) and now came before
      // the stream: read the page once more.
      schedule();
    };
    source.onerror = function () {
      if (ended) return;
      say('Reconnecting…');
      // The browser reconnects by itself (resuming after the last event) after a dropped
      // connection, but not after an answer that is not a stream (a 503, a sign-in page): then
      // the page is read again (which finds a session that ended) and a new stream opened a
      // little later (whose opening reads the page once more).
      if (source.readyState !== EventSource.CLOSED) return;
      refresh();
      window.setTimeout(function () {
        if (!ended) connect();
      }, retryDelay('stream'));
    };
    EVENT_TYPES.forEach(function (type) {
      source.addEventListener(type, function (event) {
        var task;
        try {
          task = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        if (!concerns(task)) return;
        if (task.next_task_id && live.indexOf('task:') === 0) chainedSinceRender.push(task.next_task_id);
        schedule();
      });
    });
    // Events were missed (the server says so): whatever the page shows may be stale.
    source.addEventListener('reset', schedule);
  }
  connect();
})();
