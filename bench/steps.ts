import { errorText } from "../test/harness/index.js";

/**
 * A bench step that may fail without ending the bench: the failure is printed, recorded in
 * `failures` (reported at the end), and the step yields undefined.
 */
export function stepRunner(
  failures: string[],
): <T>(what: string, fn: () => Promise<T>) => Promise<T | undefined> {
  return async (what, fn) => {
    try {
      return await fn();
    } catch (e) {
      const msg = `${what}: ${errorText(e)}`;
      failures.push(msg);
      console.error(`FAILED ${msg}`);
      return undefined;
    }
  };
}
