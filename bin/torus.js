#!/usr/bin/env -S node --max-semi-space-size=32
// The `torus` command. Runs the TypeScript sources directly through tsx, so a checkout needs no build step.
// The flag on the first line is src/ops/node-flags.ts's (also in package.json's start script).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
