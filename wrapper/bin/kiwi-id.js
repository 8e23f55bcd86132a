#!/usr/bin/env node
// Entry point: the compiled CLI (npm run build). Development and tests may run
// wrapper/src/cli/main.ts through tsx instead.
import { buildCli } from '../dist/cli/main.js';
await buildCli().parseAsync(process.argv);
