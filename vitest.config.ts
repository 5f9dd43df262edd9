import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 30 * 60_000,
    // Integration files each start their own MinIO and plugin; two at a time suits 2 cores.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
