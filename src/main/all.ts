import { run } from './runtime.js';

await run('all');
