import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Integration tests start real daemons on fixed port ranges: one file at a time.
    fileParallelism: false,
    reporters: ['default'],
  },
});
