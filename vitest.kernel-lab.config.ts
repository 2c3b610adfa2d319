import { defineConfig } from "vitest/config";
export default defineConfig({
  test: {
    include: ["test/kernel-lab/**/*.test.ts"],
    fileParallelism: false,
    // The VM emulates its CPU (TCG): 10-20x slower than the host, more when the host is busy.
    testTimeout: 900_000,
    hookTimeout: 600_000,
  },
});
