import { defineConfig } from "vitest/config";
export default defineConfig({
  test: {
    include: ["test/kernel-lab/**/*.test.ts"],
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
