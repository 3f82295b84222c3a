import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** A task's labels: its kind and payload.action. */
interface TaskLabels {
  kind: string;
  payload: unknown;
}

const actionOf = (payload: unknown): string => {
  const action = (payload as { action?: unknown } | null)?.action;
  return typeof action === 'string' ? action : 'unknown';
};

/** Latencies from milliseconds (a pickup, an HTTP request) to minutes (a slow task). */
const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** The depth of a pg-boss queue by state, as its last maintenance pass counted it. */
export interface QueueDepth {
  queue: string;
  deferred: number;
  ready: number;
  active: number;
  failed: number;
}

/**
 * This process's Prometheus metrics, on a registry of its own (so tests can build several apps in
 * one process). Each process counts what it does itself: the API creations and cancels and its
 * HTTP requests, the worker starts, outcomes, retries and callbacks; a scrape of every process
 * (or of the one `npm start` runs) adds up to the whole service.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'autonomos_' });
  const registers = [registry];
  const taskCounter = (event: string, help: string) =>
    new Counter({ name: `autonomos_tasks_${event}_total`, help, labelNames: ['kind', 'action'] as const, registers });

  const created = taskCounter('created', 'Tasks created (by the API, by chaining or as retries)');
  const started = taskCounter('started', 'Attempts started: a task claimed by a worker');
  const succeeded = taskCounter('succeeded', 'Tasks that succeeded');
  const failed = taskCounter('failed', 'Tasks that failed for good');
  const retried = taskCounter('retried', 'Failed attempts that were scheduled for a retry');
  const canceled = taskCounter('canceled', 'Tasks canceled');
  const duration = new Histogram({
    name: 'autonomos_task_duration_seconds',
    help: 'How long an attempt ran, from its start to its outcome',
    labelNames: ['kind', 'action', 'outcome'] as const,
    buckets: SECONDS_BUCKETS,
    registers,
  });
  const pickup = new Histogram({
    name: 'autonomos_task_pickup_seconds',
    help: 'From a task being due (created, or its scheduled time) to a worker starting it',
    labelNames: ['kind'] as const,
    buckets: SECONDS_BUCKETS,
    registers,
  });
  const callbacks = new Counter({
    name: 'autonomos_callbacks_total',
    help: 'Callback deliveries by outcome: sent (2xx), failed (any other answer or none) or refused (target not allowed)',
    labelNames: ['outcome'] as const,
    registers,
  });
  const httpRequests = new Counter({
    name: 'autonomos_http_requests_total',
    help: 'HTTP requests by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers,
  });
  const httpDuration = new Histogram({
    name: 'autonomos_http_request_duration_seconds',
    help: 'HTTP request duration by method and route template',
    labelNames: ['method', 'route'] as const,
    buckets: SECONDS_BUCKETS,
    registers,
  });
  const queueJobs = new Gauge({
    name: 'autonomos_queue_jobs',
    help: "Jobs in each pg-boss queue by state (deferred, ready, active, failed), as the queue's last maintenance pass counted them",
    labelNames: ['queue', 'state'] as const,
    registers,
  });
  let queueDepths: (() => Promise<QueueDepth[]>) | undefined;

  const labels = (task: TaskLabels) => ({ kind: task.kind, action: actionOf(task.payload) });
  const seconds = (from: Date | null, to: Date | null) => (from && to ? Math.max(0, (to.getTime() - from.getTime()) / 1000) : undefined);

  return {
    registry,
    tasksCreated(tasks: readonly TaskLabels[]) {
      for (const task of tasks) created.inc(labels(task));
    },
    /** Claimed tasks; `dueAt` is when each became due (its scheduled time, else its creation). */
    tasksStarted(tasks: readonly (TaskLabels & { dueAt: Date; started_at: Date | null })[]) {
      for (const task of tasks) {
        started.inc(labels(task));
        const waited = seconds(task.dueAt, task.started_at);
        if (waited !== undefined) pickup.observe({ kind: task.kind }, waited);
      }
    },
    tasksFinished(outcome: 'succeeded' | 'failed' | 'retried', tasks: readonly (TaskLabels & { started_at: Date | null; finished_at?: Date | null })[]) {
      const counter = outcome === 'succeeded' ? succeeded : outcome === 'failed' ? failed : retried;
      for (const task of tasks) {
        counter.inc(labels(task));
        const ran = seconds(task.started_at, task.finished_at ?? new Date());
        if (ran !== undefined) duration.observe({ ...labels(task), outcome }, ran);
      }
    },
    tasksCanceled(tasks: readonly TaskLabels[]) {
      for (const task of tasks) canceled.inc(labels(task));
    },
    callback(outcome: 'sent' | 'failed' | 'refused') {
      callbacks.inc({ outcome });
    },
    httpRequest(method: string, route: string, status: number, durationSeconds: number) {
      httpRequests.inc({ method, route, status: String(status) });
      httpDuration.observe({ method, route }, durationSeconds);
    },
    /** Where the queue depth comes from at each scrape (a process with a queue connection). */
    observeQueues(depths: () => Promise<QueueDepth[]>) {
      queueDepths = depths;
    },
    /** The metrics in Prometheus's text format, the queue depth read now. */
    async render(): Promise<{ contentType: string; body: string }> {
      if (queueDepths) {
        queueJobs.reset();
        for (const depth of await queueDepths()) {
          for (const state of ['deferred', 'ready', 'active', 'failed'] as const) queueJobs.set({ queue: depth.queue, state }, depth[state]);
        }
      }
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
