/**
 * How long a query waits for a pooled connection (or for a new one to be made) before it fails:
 * a request that needs the database answers 503 within about this, instead of hanging, also
 * while a restarting server has its port open but does not accept connections yet. Under normal
 * load a connection is free within milliseconds; a second of waiting means the pool is overrun.
 */
export const CONNECTION_TIMEOUT_MS = 1_000;
/**
 * How our pools and pg-boss's keep the connections nobody uses for a while. A new connection's
 * first statements cost tens of milliseconds here (the server loads its catalog caches, compiles
 * the trigger functions and plans the prepared statements again): with pg's default of 10 s idle,
 * the first burst after each quiet spell paid that on most connections, and the benchmark's loaded
 * phase began with its slowest creations (150-320 ms). A minute covers such spells; the pools stay
 * bounded by their size. An idle connection a NAT or load balancer drops silently meanwhile is
 * found by TCP keepalive after 30 s of silence, not after the kernel's default of two hours.
 * `idleTimeoutMs` replaces the minute (the tests give back their connections sooner).
 */
export function idleConnections(idleTimeoutMs = 60_000) {
  return { idleTimeoutMillis: idleTimeoutMs, keepAlive: true, keepAliveInitialDelayMillis: 30_000 };
}
