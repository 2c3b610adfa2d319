// vitest glue for end-to-end suites: one lab per suite, its logs printed when a test fails,
// and cleanup whatever happens.
import { afterAll, afterEach, beforeAll } from "vitest";
import { Lab, requireWeftBuilt } from "../harness/index.js";

/**
 * Builds a lab before the suite with `setup` and tears it down after; returns an accessor for
 * what `setup` made (and the lab), valid inside the suite's tests.
 */
export function useLab<T extends object>(
  label: string,
  setup: (lab: Lab) => Promise<T>,
): () => T & { lab: Lab } {
  let lab: Lab | undefined;
  let made: T | undefined;
  beforeAll(async () => {
    requireWeftBuilt();
    lab = new Lab(label);
    const current = lab;
    made = await current.guard(() => setup(current));
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail" && lab) console.error(lab.logsReport());
  });
  afterAll(async () => {
    await lab?.cleanup();
  });
  return () => {
    if (lab === undefined || made === undefined) throw new Error(`lab ${label} is not set up`);
    return { ...made, lab };
  };
}
