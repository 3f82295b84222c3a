import { run } from './runtime.js';

await run('api');
