import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 180_000,
    hookTimeout: 120_000,
    // Two cores: more workers only thrash PGlite's WASM heap.
    maxWorkers: 2,
    reporters: ['default'],
    globalSetup: ['test/harness/global-setup.ts'],
  },
});
