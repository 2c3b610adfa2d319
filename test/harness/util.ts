// Small generic helpers shared by the end-to-end harness. No test-framework imports here: the
// harness is also used by the benchmark.
import { existsSync, readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let cachedRoot: string | undefined;

/** Absolute path of the weft repository (the directory whose package.json is named "weft"). */
export function repoRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        const parsed = JSON.parse(readFileSync(pkg, "utf8")) as { name?: unknown };
        if (parsed.name === "weft") {
          cachedRoot = dir;
          return dir;
        }
      } catch {
        // not a usable package.json: keep walking up
      }
    }
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error("cannot find the weft repository root above " + import.meta.url);
    dir = parent;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `n` random characters from [0-9a-z]. */
export function randomBase36(n: number): string {
  const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz";
  const bytes = randomBytes(n);
  let out = "";
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

/** Thrown by a waitFor probe to stop waiting at once (e.g. the process being watched died). */
export class WaitAbort extends Error {
  override name = "WaitAbort";
}

export interface WaitForOptions {
  /** What we are waiting for, used in the timeout error ("timed out waiting for <what>"). */
  what: string;
  timeoutMs?: number;
  intervalMs?: number;
  /** Called on timeout; its result is appended to the error message (e.g. the last report). */
  describe?: () => string | Promise<string>;
}

/**
 * Polls `probe` until it returns a truthy value (which is returned) or the deadline passes.
 * Exceptions thrown by the probe count as "not yet" and the last one is quoted in the error,
 * except WaitAbort, which ends the wait immediately.
 */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  opts: WaitForOptions,
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 200;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
      lastError = undefined;
    } catch (err) {
      if (err instanceof WaitAbort) throw err;
      lastError = err;
    }
    if (Date.now() >= deadline) break;
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
  let msg = `timed out after ${timeoutMs} ms (${attempts} attempts) waiting for ${opts.what}`;
  if (lastError !== undefined) msg += `\nlast error: ${errorText(lastError)}`;
  if (opts.describe) {
    try {
      msg += `\n${await opts.describe()}`;
    } catch (err) {
      msg += `\n(describe failed: ${errorText(err)})`;
    }
  }
  throw new Error(msg);
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Last `n` lines of `text`. */
export function tailLines(text: string, n: number): string {
  const lines = text.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines.slice(-n).join("\n");
}
