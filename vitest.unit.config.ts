import { defineConfig } from "vitest/config";

// The unit tier: in-process, no MinIO, no other server, no Go build
// (`npm run test:unit`). The whole suite is vitest.config.ts.
export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts"],
    testTimeout: 30_000,
    reporters: ["default"],
  },
});
