/**
 * How long a query waits for a pooled connection (or for a new one to be made) before it fails:
 * a request that needs the database answers 503 within about this, instead of hanging, also
 * while a restarting server has its port open but does not accept connections yet. Under normal
 * load a connection is free within milliseconds; a second of waiting means the pool is overrun.
 */
export const CONNECTION_TIMEOUT_MS = 1_000;
/**
 * How long a pool keeps a connection nobody uses, for ours and pg-boss's. A new connection's first
 * statements cost tens of milliseconds (the server loads its catalog caches, compiles the trigger
 * functions and plans the prepared statements again): with pg's default of 10 s, the first burst
 * after every quiet spell paid that on most connections, and the benchmark's loaded phase began
 * with its slowest creations (150-340 ms). The pools stay bounded by their size.
 */
export const IDLE_CONNECTION_MS = 5 * 60_000;
